"""The deployment files, checked without Docker or a cluster: they run Procfile lines and real commands, runtime requirements only."""
import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.stack import procfile
from tests.deploy.parsing import DockerIgnore, compose_value, dockerfile_stages
from tests.stack import ROOT

PROCFILE = procfile()
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE = "ledgerpulse"  # the image name in deploy/k8s (kustomization.yaml rewrites it to the registry's)
ENTRYPOINT = "/app/scripts/procfile.sh"


def yaml_files() -> list[Path]:
    return [ROOT / "compose.yaml", *sorted(DEPLOY.rglob("*.yaml")), *sorted(DEPLOY.rglob("*.yml"))]


def k8s_documents() -> list[dict]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml" for doc in yaml.safe_load_all(path.read_text()) if doc]


def management_commands() -> set[str]:
    from django.core.management import get_commands

    return set(get_commands())


def pins(path: Path) -> dict[str, str]:
    """name -> version of a requirements file's `name==version` lines (others, like -r, are skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            found[canonicalize_name(name)] = version.strip()
    return found


def assert_runs_a_procfile_line_or_a_management_command(where: str, entrypoint: list[str] | None, command: list[str] | None):
    """A container either keeps the image's entrypoint and names a Procfile line (extra arguments allowed),
    or runs `python manage.py <an existing command>`: never its own copy of a Procfile command."""
    entrypoint, command = list(entrypoint or []), list(command or [])
    if not entrypoint or entrypoint == [ENTRYPOINT]:
        assert command and command[0] in PROCFILE, f"{where}: {command} names no Procfile line ({sorted(PROCFILE)})"
        return
    full = entrypoint + command
    assert full[:2] == ["python", "manage.py"], f"{where}: runs {full}, neither a Procfile line nor manage.py"
    assert full[2] in management_commands(), f"{where}: manage.py has no command {full[2]!r}"


# --- YAML -----------------------------------------------------------------------------------------------


def test_it_lints_every_yaml_file_clean():
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(DEPLOY / "yamllint.yaml"))
    problems = [
        f"{path.relative_to(ROOT)}:{p.line}:{p.column} {p.level} {p.message}"
        for path in yaml_files()
        for p in linter.run(path.read_text(), config, str(path))
    ]
    assert len(yaml_files()) >= 7 and problems == []


# --- the Procfile and the entrypoint ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROCFILE))
def test_it_reads_each_procfile_line_in_the_entrypoint_as_the_stack_does(name):
    printed = subprocess.run([ROOT / "scripts" / "procfile.sh", "--print", name], capture_output=True, text=True, timeout=10)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == PROCFILE[name] + "\n"


def test_it_runs_the_named_line_in_the_entrypoint_with_extra_arguments_appended(tmp_path):
    fake = tmp_path / "Procfile"
    fake.write_text('# a comment: not a line\nweb: echo "web as $0" --port "${PORT:-1}"\ngreet : exec printf "%s|" "$0"\n')
    env = {"PATH": os.environ["PATH"], "PROCFILE": str(fake), "PORT": "8080"}

    def run(*args):
        return subprocess.run([ROOT / "scripts" / "procfile.sh", *args], capture_output=True, text=True, env=env, timeout=10)

    assert run("web").stdout == "web as web --port 8080\n"
    assert run("greet", "one arg", "two").stdout == "greet|one arg|two|"
    missing = run("nope")
    assert missing.returncode == 64 and "no 'nope:' line" in missing.stderr


def test_it_installs_every_executable_of_the_procfile_from_a_runtime_requirement():
    runtime = pins(ROOT / "requirements.txt")
    scripts = {ep.name: ep.dist.name for ep in importlib.metadata.entry_points(group="console_scripts")}
    for name, command in PROCFILE.items():
        executables = re.findall(r"\bexec\s+(\S+)", command)
        assert executables, f"{name}: the line should exec its server (signals must reach it)"
        for executable in executables:
            assert executable in scripts, f"{name}: {executable} is not installed by any package"
            assert canonicalize_name(scripts[executable]) in runtime, f"{name}: {executable} comes from {scripts[executable]}, not requirements.txt"
    # Scripts the lines run before they exec (`python core/metrics_dir.py ...`) are in the image.
    ignore = DockerIgnore((ROOT / ".dockerignore").read_text())
    for name, command in PROCFILE.items():
        for script in re.findall(r"\bpython3?\s+([\w./-]+\.py)\b", command):
            assert (ROOT / script).is_file() and ignore.included(script), f"{name}: runs {script}, which the image lacks"
    # uvicorn's options name implementations that are separate packages.
    for option, package in (("--loop uvloop", "uvloop"), ("--ws websockets", "websockets"), ("--http core.http:SlowClientHttpToolsProtocol", "httptools")):
        assert option in PROCFILE["web"] and package in runtime


# --- requirements ---------------------------------------------------------------------------------------------

# Packages that no code imports by name but the runtime needs: why each is there.
LOADED_BY_NAME = {
    "psycopg-binary": "psycopg's compiled implementation, which psycopg loads itself",
    "uvloop": "the web line's --loop uvloop",
    "httptools": "the web line's HTTP parser (core/http.py's protocol)",
    "websockets": "the web line's --ws websockets-sansio",
    "tzdata": "the IANA time zones zoneinfo reads (ANALYTICS_TIME_ZONE): the slim image has no system zone database",
    "psycopg-pool": "Django's PostgreSQL connection pool (DATABASE_POOL), psycopg_pool loaded by Django",
}


def runtime_python_files() -> list[Path]:
    ignore = DockerIgnore((ROOT / ".dockerignore").read_text())
    return [p for p in context_files() if p.endswith(".py") and ignore.included(p)]


def context_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [line for line in listed.stdout.splitlines() if (ROOT / line).is_file()]


def top_level_names(path: Path) -> set[str]:
    """Modules a file imports, and the first part of every dotted string (settings name apps and classes so)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[a-z_][a-z0-9_]*(\.[A-Za-z0-9_]+)*", node.value):
            names.add(node.value.split(".")[0])
    return names


def dependency_closure(roots: set[str]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def test_it_pins_exactly_what_the_runtime_imports_and_their_dependencies_in_the_runtime_requirements():
    runtime = pins(ROOT / "requirements.txt")
    providers = importlib.metadata.packages_distributions()
    imported = set()
    for path in runtime_python_files():
        for module in top_level_names(ROOT / path):
            imported.update(canonicalize_name(d) for d in providers.get(module, ()))
    scripts = {ep.name: canonicalize_name(ep.dist.name) for ep in importlib.metadata.entry_points(group="console_scripts")}
    executables = {scripts[e] for command in PROCFILE.values() for e in re.findall(r"\bexec\s+(\S+)", command)}
    needed = dependency_closure(imported | executables | set(LOADED_BY_NAME))
    assert sorted(needed - set(runtime)) == [], "needed at run time but not pinned in requirements.txt"
    assert sorted(set(runtime) - needed) == [], "pinned in requirements.txt but nothing at run time uses it: requirements-test.txt?"
    for tool in ("pytest", "hypothesis", "schemathesis", "playwright", "yamllint", "daphne", "py-spy"):
        assert tool not in runtime


def test_it_has_the_pinned_versions_installed():
    pinned = {**pins(ROOT / "requirements.txt"), **pins(ROOT / "requirements-test.txt")}
    wrong = {name: (version, importlib.metadata.version(name)) for name, version in pinned.items() if importlib.metadata.version(name) != version}
    assert wrong == {}, "pinned vs installed"


# --- Dockerfile, .dockerignore ------------------------------------------------------------------------------


def test_it_builds_the_image_from_python_311_slim_in_stages_and_runs_it_without_privileges():
    stages = dockerfile_stages(ROOT / "Dockerfile")
    assert len(stages) >= 2 and all(stage.base == "python:3.11-slim" for stage in stages)
    build, runtime = stages[0], stages[-1]
    installs = [i.text for i in build.all("RUN") if "pip install" in i.text]
    assert installs and all("-r /tmp/requirements.txt" in text for text in installs)
    assert [i.words() for i in build.all("COPY")] == [["requirements.txt", "/tmp/requirements.txt"]]
    # The runtime stage installs nothing: it copies the build's virtualenv.
    assert not any("pip" in i.text or "apt-get" in i.text for i in runtime.all("RUN"))
    assert ["--from=build", "/opt/venv", "/opt/venv"] == runtime.all("COPY")[0].words()
    assert not any("requirements-test" in i.text for stage in stages for i in stage.instructions)
    # The last USER is a numeric uid other than 0, after every RUN (nothing runs as root once it is set).
    users = [i for i in runtime.instructions if i.keyword == "USER"]
    assert users and users[-1].text.split(":")[0].isdigit() and int(users[-1].text.split(":")[0]) > 0
    last_run = max(n for n, i in enumerate(runtime.instructions) if i.keyword == "RUN")
    assert runtime.instructions.index(users[-1]) > last_run
    assert runtime.all("ENTRYPOINT")[-1].words() == [ENTRYPOINT]
    assert runtime.all("CMD")[-1].words()[0] in PROCFILE
    assert os.access(ROOT / ENTRYPOINT.removeprefix("/app/"), os.X_OK)


def test_it_collects_the_static_files_in_the_image_build_with_nothing_but_its_environment(tmp_path):
    runtime = dockerfile_stages(ROOT / "Dockerfile")[-1]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    for instruction in runtime.all("ENV"):
        for word in instruction.words():
            name, _, value = word.partition("=")
            env[name] = value.replace("$PATH", env.get("PATH", ""))
    env["DJANGO_STATIC_ROOT"] = str(tmp_path / "static-root")  # instead of /app/static-root
    (step,) = [i.text for i in runtime.all("RUN") if "manage.py" in i.text]
    result = subprocess.run(["sh", "-c", step], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "static-root" / "dashboard_ui").is_dir() and (tmp_path / "static-root" / "admin").is_dir()


def test_it_sends_the_runtime_to_the_build_and_nothing_of_the_tests_or_local_secrets():
    ignore = DockerIgnore((ROOT / ".dockerignore").read_text())
    for needed in ("Procfile", "requirements.txt", "manage.py", "celery_app.py", "scripts/procfile.sh", "core/settings.py",
                   "dashboard_ui/templates/dashboard_ui/dashboard.html"):
        assert ignore.included(needed), needed
    for kept_out in ("tests/conftest.py", "bench/harness.py", "requirements-test.txt", ".env.local", ".venv/bin/python",
                     ".git/config", "db.sqlite3", "core/__pycache__/settings.cpython-311.pyc", "scripts/stack.py", "deploy/k8s/web.yaml"):
        assert not ignore.included(kept_out), kept_out
    # Every project module the runtime imports is in the image.
    files = set(context_files())
    local = {path.split("/")[0].removesuffix(".py") for path in files}
    runtime = runtime_python_files()
    for path in runtime:
        tree = ast.parse((ROOT / path).read_text())
        for node in ast.walk(tree):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for module in modules:
                if module.split(".")[0] not in local:
                    continue
                candidates = [module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"]
                present = [c for c in candidates if c in files]
                if present:  # (a name imported from a module, `from core.x import y`, is checked as core/x)
                    assert ignore.included(present[0]), f"{path} imports {module}, which .dockerignore keeps out"
    # The apps the settings install are all there (templates and static files included).
    from django.conf import settings

    for app in settings.INSTALLED_APPS:
        if (ROOT / app).is_dir():
            assert ignore.included(f"{app}/apps.py"), app


def test_it_reads_dockerignore_by_dockers_rules():
    ignore = DockerIgnore("*\n!core/\n**/__pycache__\n!scripts/procfile.sh\ndocs/*.md\n")
    assert ignore.included("core/a/b.py") and not ignore.included("core/a/__pycache__/b.pyc")
    assert ignore.included("scripts/procfile.sh") and not ignore.included("scripts/stack.py")
    assert not ignore.included("README.md")
    assert DockerIgnore("docs/i*").included("docs/img/x.md") is False  # a parent directory's match counts
    assert DockerIgnore("docs/*.md").included("docs/img/x.md")  # `*` stays within one directory
    assert DockerIgnore("docs/*.md").included("docs/x.txt")


# --- compose.yaml -------------------------------------------------------------------------------------------


def test_it_runs_procfile_lines_in_compose_behind_the_proxy_after_the_migration():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"web", "worker", "beat", "migrate", "postgres", "redis", "proxy"} <= set(services)
    app_services = {name: s for name, s in services.items() if s.get("build") == "."}
    assert set(app_services) == {"web", "worker", "beat", "migrate"}
    for name, service in app_services.items():
        assert_runs_a_procfile_line_or_a_management_command(f"compose {name}", service.get("entrypoint"), service.get("command"))
    assert [services[n]["command"][0] for n in ("web", "worker", "beat")] == ["web", "worker", "beat"]
    assert services["migrate"]["command"][0] == "migrate"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "ports" not in services[name]  # reachable only through the proxy
    # Only the proxy's forwarded headers are believed: TRUSTED_PROXIES is its fixed address.
    proxy = services["proxy"]
    env = services["web"]["environment"]
    assert env["TRUSTED_PROXIES"] == proxy["networks"]["backend"]["ipv4_address"]
    assert "DJANGO_BEHIND_PROXY" not in env  # uvicorn takes X-Forwarded-Proto from TRUSTED_PROXIES only
    for volume in proxy["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./deploy/nginx"):
            assert (ROOT / source).exists(), source
    assert "/etc/nginx/nginx.conf" in " ".join(proxy["volumes"])
    # The web process listens where the proxy's upstream says.
    upstream = (DEPLOY / "nginx" / "ledgerpulse" / "upstream.conf").read_text()
    assert re.search(r"server\s+web:8000;", upstream) and "8000/healthz" in str(services["web"]["healthcheck"]["test"])
    # Exactly one beat.
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_it_sets_the_proxys_slow_client_timeouts_no_longer_than_the_web_processes():
    timeouts = (DEPLOY / "nginx" / "ledgerpulse" / "timeouts.conf").read_text()
    header = int(re.search(r"^client_header_timeout\s+(\d+)s;", timeouts, re.M).group(1))
    body = int(re.search(r"^client_body_timeout\s+(\d+)s;", timeouts, re.M).group(1))
    from django.conf import settings

    assert 0 < header <= settings.HTTP_HEADER_TIMEOUT_SECONDS and 0 < body <= settings.HTTP_BODY_TIMEOUT_SECONDS


# --- Kubernetes ---------------------------------------------------------------------------------------------


def pod_specs() -> dict[str, tuple[dict, dict]]:
    """name -> (the workload, its pod spec) for every Deployment and Job."""
    return {
        doc["metadata"]["name"]: (doc, doc["spec"]["template"]["spec"])
        for doc in k8s_documents()
        if doc["kind"] in ("Deployment", "Job")
    }


# The oldest Kubernetes release the manifests are checked against; nothing they use is newer.
OLDEST_KUBERNETES = "1.29.0"


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, "latest"])
def test_it_validates_every_kubernetes_manifest_against_the_apis_schema(version):
    import kubernetes_validate

    version = kubernetes_validate.latest_version() if version == "latest" else version
    documents = k8s_documents()
    assert {d["kind"] for d in documents} == {"ConfigMap", "Deployment", "Service", "Job"}
    for doc in documents:
        # strict: a misspelt or misplaced field (`readinessProbes`, a probe on the pod) fails too.
        kubernetes_validate.validate(doc, version, strict=True)


def test_it_lists_every_manifest_in_the_kustomization():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert [image["name"] for image in kustomization["images"]] == [IMAGE]


def test_it_runs_a_procfile_line_or_a_management_command_in_every_kubernetes_container_with_requests_and_no_root():
    workloads = pod_specs()
    assert {"ledgerpulse-web", "ledgerpulse-worker", "ledgerpulse-beat", "ledgerpulse-migrate"} <= set(workloads)
    kinds = {}
    for name, (workload, spec) in workloads.items():
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
        for container in spec["containers"]:
            assert container["image"] == IMAGE
            assert_runs_a_procfile_line_or_a_management_command(f"{name}/{container['name']}", container.get("command"), container.get("args"))
            requests = container["resources"]["requests"]
            assert requests.get("cpu") and requests.get("memory"), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            kinds[name] = (container.get("args") or container.get("command"))[0 if container.get("args") else 2]
            # Secrets come from the Secret, the rest from the ConfigMap.
            refs = {next(iter(ref)): next(iter(ref.values()))["name"] for ref in container["envFrom"]}
            assert refs == {"configMapRef": "ledgerpulse-config", "secretRef": "ledgerpulse-secrets"}
    assert kinds == {"ledgerpulse-web": "web", "ledgerpulse-worker": "worker", "ledgerpulse-beat": "beat", "ledgerpulse-migrate": "migrate"}
    assert workloads["ledgerpulse-migrate"][0]["kind"] == "Job"
    beat = workloads["ledgerpulse-beat"][0]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"


def test_it_probes_the_web_pods_on_readyz_and_healthz_and_serves_them_through_the_service():
    from django.urls import resolve

    web, spec = pod_specs()["ledgerpulse-web"]
    (container,) = spec["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config = next(d for d in k8s_documents() if d["kind"] == "ConfigMap")["data"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        path = container[probe]["httpGet"]["path"]
        assert resolve(path).url_name in ("readyz", "healthz"), path
        assert container[probe]["httpGet"]["port"] == "http"
        # The kubelet's default Host is the pod's address, which Django would refuse (400).
        hosts = [h["value"] for h in container[probe]["httpGet"]["httpHeaders"] if h["name"].lower() == "host"]
        assert hosts and hosts[0] in config["DJANGO_ALLOWED_HOSTS"].split(","), probe
    (service,) = [d for d in k8s_documents() if d["kind"] == "Service"]
    assert service["spec"]["selector"] == web["spec"]["template"]["metadata"]["labels"] == web["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert "WEB_CONCURRENCY" in config and not {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"} & set(config)


# --- the deployment checklist with the shipped settings ---------------------------------------------------


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "core.settings", "DJANGO_ENV_FILE": "/dev/null", **env}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )


SECRETS = {
    "DJANGO_SECRET_KEY": "deploy-check-" + "k3Y" * 20,
    "POSTGRES_PASSWORD": "pw",
    "DATABASE_URL": "postgres://ledgerpulse:pw@127.0.0.1:5432/ledgerpulse",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DJANGO_ALLOWED_HOSTS": "ledger.example.com",
}


def test_it_passes_djangos_deployment_checklist_with_the_compose_web_environment():
    web = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["web"]
    env = {name: compose_value(value, SECRETS) for name, value in web["environment"].items()}
    assert env["DJANGO_SSL_REDIRECT"] == "true" and env["TRUSTED_PROXIES"] == "172.30.64.10"
    assert env["DJANGO_ALLOWED_HOSTS"] == "ledger.example.com,localhost"  # localhost: the healthcheck's Host
    result = check_deploy(env)
    assert result.returncode == 0 and "no issues" in result.stdout, result.stdout + result.stderr


def test_it_passes_djangos_deployment_checklist_with_the_kubernetes_config():
    config = next(d for d in k8s_documents() if d["kind"] == "ConfigMap")["data"]
    secret = {name: SECRETS[name] for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL")}
    result = check_deploy({**config, **secret})
    assert result.returncode == 0 and "no issues" in result.stdout, result.stdout + result.stderr
