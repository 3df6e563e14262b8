"""The local env file: variables for this checkout (written by `make run`), read before the settings.

`make run` (scripts/run.sh) writes a random `DJANGO_SECRET_KEY` into `.env.local` at the top of the
checkout, once, mode 0600. core/settings.py loads that file first, so the server, the Celery processes
and every `manage.py` command of the checkout sign with the same key. A variable already set in the
environment always wins; the file only fills in what is missing.

Format: `NAME=value` lines (an `export ` prefix and single or double quotes around the value are
allowed), blank lines and `# comments`. Anything else stops start-up naming the file and the line
number, never the line itself (it may hold a secret).
"""
import os
import re
import stat
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from core.env import env_str

ENV_FILE_VARIABLE = "DJANGO_ENV_FILE"
DEFAULT_NAME = ".env.local"
_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")


def parse(text: str, source: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if not match:
            raise ImproperlyConfigured(f"{ENV_FILE_VARIABLE}: line {number} of {source} is not NAME=value")
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def load(base_dir: Path) -> Path | None:
    """Fill os.environ from the local env file (DJANGO_ENV_FILE, default BASE_DIR/.env.local).

    Returns the file read, or None when the default file does not exist. A file named in
    DJANGO_ENV_FILE must exist; `/dev/null` reads nothing.
    """
    named = env_str(ENV_FILE_VARIABLE)
    path = Path(named) if named else base_dir / DEFAULT_NAME
    try:
        info = path.stat()
    except FileNotFoundError:
        if named:
            raise ImproperlyConfigured(f"{ENV_FILE_VARIABLE}={named!r}: no such file") from None
        return None
    except OSError as exc:
        raise ImproperlyConfigured(f"{ENV_FILE_VARIABLE}: cannot read {path}: {exc.strerror}") from None
    if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
        # It holds the secret key: readable by its owner only, as make run writes it.
        raise ImproperlyConfigured(
            f"{ENV_FILE_VARIABLE}: {path} is readable by other users (mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it"
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{ENV_FILE_VARIABLE}: cannot read {path}: {exc}") from None
    for name, value in parse(text, str(path)).items():
        # What the environment sets wins; an empty value counts as unset, as everywhere in core/env.py.
        if env_str(name) is None:
            os.environ[name] = value
    return path
