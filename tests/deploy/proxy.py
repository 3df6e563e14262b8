"""The shipped nginx config (deploy/nginx) run by Debian's nginx in front of a live web process, on inherited sockets."""
from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.stack import ROOT, Process, Stack

NGINX_DIR = ROOT / "deploy" / "nginx"
# The files that say where things are in one environment; the suite writes its own, everything else
# (nginx.conf, ledgerpulse/site.conf) runs exactly as shipped.
ENVIRONMENT_FILES = ("upstream.conf", "timeouts.conf", "listen.conf", "listen-redirect.conf")
# Shortened so the suite can wait them out; production's are in deploy/nginx/ledgerpulse/timeouts.conf.
HEADER_TIMEOUT = 1
BODY_TIMEOUT = 1


def nginx_binary() -> str | None:
    return shutil.which("nginx", path="/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files), which the test clients trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@dataclass
class Proxy:
    process: Process
    tls_port: int
    http_port: int
    conf_dir: Path
    client_tls: ssl.SSLContext
    certificate: Path  # what clients trust (requests' `verify`)

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"


def start_proxy(stack: Stack, work: Path) -> Proxy:
    """nginx with the shipped config in front of `stack`'s web process.

    The listening sockets are bound here and inherited through nginx's NGINX variable (its binary-upgrade
    mechanism): nginx adopts the descriptors whose address matches a `listen` directive, so it never binds
    a port itself and no port race is possible. Connections queue on the sockets until nginx accepts.
    """
    conf = work / "conf"
    shutil.copytree(NGINX_DIR, conf)
    cert, key = self_signed_certificate(work)
    tls, plain = listening_socket(), listening_socket()
    try:
        tls_port, http_port = tls.getsockname()[1], plain.getsockname()[1]
        site = conf / "ledgerpulse"
        (site / "upstream.conf").write_text(
            f"upstream ledgerpulse_web {{ server 127.0.0.1:{stack.port}; keepalive 8; keepalive_timeout 4s; }}\n"
        )
        (site / "timeouts.conf").write_text(
            f"client_header_timeout {HEADER_TIMEOUT}s;\nclient_body_timeout {BODY_TIMEOUT}s;\nsend_timeout 10s;\nkeepalive_timeout 10s;\n"
        )
        (site / "listen.conf").write_text(
            f"listen 127.0.0.1:{tls_port} ssl;\nssl_certificate {cert};\nssl_certificate_key {key};\nssl_protocols TLSv1.2 TLSv1.3;\n"
        )
        (site / "listen-redirect.conf").write_text(f"listen 127.0.0.1:{http_port};\n")
        binary = nginx_binary()
        args = [binary, "-p", str(work), "-c", str(conf / "nginx.conf"), "-e", str(work / "nginx-error.log")]
        # The pid file and the foreground master in the work directory: never the system's nginx.
        globals_ = f"daemon off; master_process on; pid {work / 'nginx.pid'};"
        fds = (tls.fileno(), plain.fileno())
        env = {"PATH": "/usr/sbin:/usr/bin:/bin", "NGINX": "".join(f"{fd};" for fd in fds)}
        # `nginx -t` first: a config error fails here with nginx's own message instead of a request timing out.
        checked = subprocess.run([*args, "-t", "-g", globals_], capture_output=True, text=True, timeout=30, env={"PATH": env["PATH"]})
        assert checked.returncode == 0, checked.stderr + (work / "nginx-error.log").read_text(errors="replace")
        process = stack.spawn("nginx", *args, "-g", globals_, pass_fds=fds, env=env)
    finally:
        tls.close()
        plain.close()  # nginx holds its own copies
    client_tls = ssl.create_default_context(cafile=str(cert))
    return Proxy(process, tls_port, http_port, conf, client_tls, cert)
