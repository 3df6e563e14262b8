"""Readers for the deployment files Docker is not here to read: the Dockerfile's instructions and .dockerignore."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    text: str  # the arguments, continuation lines joined

    def words(self) -> list[str]:
        """Exec form (a JSON array) or shell words."""
        if self.text.startswith("["):
            return json.loads(self.text)
        return shlex.split(self.text)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def dockerfile_stages(path: Path) -> list[Stage]:
    """The build stages in order; a backslash at the end of a line continues it, # starts a comment line."""
    logical, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped, as Docker does
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: the last instruction ends with a continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, text = line.partition(" ")
        instruction = Instruction(keyword.upper(), text.strip())
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", instruction.text, re.IGNORECASE)
            assert match, f"unreadable FROM: {line}"
            stages.append(Stage(match.group(1), match.group(2)))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def _glob_regex(pattern: str) -> str:
    """Go's filepath.Match plus Docker's `**` (any number of directories), as one regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return out


class DockerIgnore:
    """.dockerignore: the last pattern matching a path (or one of its parent directories) decides; `!` lets in."""

    def __init__(self, text: str):
        self.rules: list[tuple[bool, re.Pattern]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line.lstrip("!").strip().strip("/")
            pattern = re.sub(r"^\./", "", pattern)
            self.rules.append((include, re.compile(_glob_regex(pattern))))

    def included(self, path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        decision = True
        for include, regex in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                decision = include
        return decision


def compose_value(value: str, given: dict[str, str]) -> str:
    """Compose's interpolation: ${NAME}, ${NAME:-default}, ${NAME:?error} (required: must be in `given`)."""

    def substitute(match):
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in given:
            return given[name]
        assert op == ":-", f"${{{name}}} is required ({arg}) and the test did not give it"
        return arg

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", substitute, str(value))
