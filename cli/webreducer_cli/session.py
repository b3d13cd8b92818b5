"""What a command needs, found once: the linked folder, the server and token, the hook."""

from __future__ import annotations

import os
from pathlib import Path

from webreducer_cli.api import Api
from webreducer_cli.config import credentials_resolve
from webreducer_cli.errors import CliError
from webreducer_cli.project import FILENAME, Project, project_find


class Session:
    def __init__(self, *, hook: str | None = None) -> None:
        self.hook_override = hook or os.environ.get("WR_HOOK") or None
        self._project: Project | None = None
        self._project_looked = False
        self._api: Api | None = None

    def project(self) -> Project | None:
        if not self._project_looked:
            self._project, self._project_looked = project_find(), True
        return self._project

    def project_required(self) -> Project:
        project = self.project()
        if project is None:
            raise CliError(f"No {FILENAME} in this folder or above: run `wr init` first.")
        return project

    @property
    def api(self) -> Api:
        if self._api is None:
            project = self.project()
            credentials = credentials_resolve(project_url=project.url if project else None)
            self._api = Api(credentials.url, credentials.token)
        return self._api

    @property
    def hook_id(self) -> str:
        if self.hook_override:
            return self.hook_override
        project = self.project()
        if project is None:
            raise CliError(
                f"No {FILENAME} in this folder or above: run `wr init`, or pass --hook ID "
                "(or set WR_HOOK)."
            )
        return project.hook

    def hook_path(self, suffix: str = "") -> str:
        return f"/api/hooks/{self.hook_id}/{suffix}"

    def code_file(self, given: str | None) -> Path:
        """The file given on the command line, else the linked folder's code file."""
        if given:
            return Path(given)
        project = self.project()
        if project is None:
            raise CliError(
                f"Name the code file, or run `wr init` to link this folder ({FILENAME})."
            )
        return project.code_path

    def tests_file(self, given: str | None) -> Path | None:
        if given:
            return Path(given)
        project = self.project()
        return project.tests_path if project else None

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


def read_code(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"Cannot read {path}: {error}") from None
