"""`webreducer.toml`: the link between a folder (a git repository, usually) and a hook.

Written by `wr init`, found in the current directory or the nearest parent (like `.git`), meant
to be committed: it holds the hook's id and the server's URL, never a token or a key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from webreducer_cli.config import toml_string
from webreducer_cli.errors import CliError

FILENAME = "webreducer.toml"


@dataclass
class Project:
    root: Path
    hook: str
    url: str | None = None
    code: str = "hook.py"
    tests: str = "tests.json"

    @property
    def code_path(self) -> Path:
        return self.root / self.code

    @property
    def tests_path(self) -> Path:
        return self.root / self.tests

    def save(self) -> Path:
        path = self.root / FILENAME
        lines = [
            "# Links this folder to a WebReducer hook (`wr init`). Safe to commit: no secrets.\n",
            f"hook = {toml_string(self.hook)}\n",
        ]
        if self.url:
            lines.append(f"url = {toml_string(self.url)}\n")
        lines.append(f"code = {toml_string(self.code)}\n")
        lines.append(f"tests = {toml_string(self.tests)}\n")
        path.write_text("".join(lines), encoding="utf-8")
        return path


def project_find(start: Path | None = None) -> Project | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / FILENAME
        if path.is_file():
            return project_load(path)
    return None


def project_load(path: Path) -> Project:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise CliError(f"Cannot read {path}: {error}") from None
    hook = data.get("hook")
    if not isinstance(hook, str) or not hook:
        raise CliError(f"{path}: `hook` (the hook's id) is missing.")
    values = {name: data.get(name) for name in ("url", "code", "tests")}
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise CliError(f"{path}: `{name}` must be a string.")
    return Project(
        root=path.parent,
        hook=hook,
        url=values["url"],
        code=values["code"] or "hook.py",
        tests=values["tests"] or "tests.json",
    )
