"""Where the server and the token come from: the environment, then `wr login`'s config file.

The config file is `config.toml` in the user's config dir (platformdirs: `~/.config/webreducer/`
on Linux, `~/Library/Application Support/webreducer/` on macOS). It holds one token per server
URL and the URL of the last login, so one machine can talk to several servers.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from webreducer_cli.errors import CliError

APP = "webreducer"
DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.toml"


def url_normalize(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"Not a server URL: {url!r} (expected http://… or https://…).")
    return url


@dataclass
class UserConfig:
    url: str | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> UserConfig:
        path = path or config_path()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise CliError(f"Cannot read {path}: {error}") from None
        tokens = data.get("tokens")
        return cls(
            url=data.get("url") if isinstance(data.get("url"), str) else None,
            tokens={k: v for k, v in tokens.items() if isinstance(v, str)}
            if isinstance(tokens, dict)
            else {},
        )

    def save(self, path: Path | None = None) -> Path:
        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = ["# Written by `wr login`. Holds API tokens: keep it private (mode 0600).\n"]
        if self.url:
            lines.append(f"url = {toml_string(self.url)}\n")
        lines.append("\n[tokens]\n")
        lines += [
            f"{toml_string(url)} = {toml_string(token)}\n" for url, token in self.tokens.items()
        ]
        # Created 0600 from the start (never world-readable, not even for a moment), and
        # chmod-ed in case an older file had looser bits.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write("".join(lines))
        os.chmod(path, 0o600)
        return path


def toml_string(value: str) -> str:
    # JSON's string escapes (\" \\ \n \uXXXX …) are all valid in a TOML basic string.
    return json.dumps(value, ensure_ascii=False)


@dataclass
class Credentials:
    url: str
    token: str | None


def credentials_resolve(*, project_url: str | None = None) -> Credentials:
    """WR_URL, else the linked folder's url, else the last login's, else the local default;
    WR_TOKEN, else the token stored for that URL."""
    config = UserConfig.load()
    url = url_normalize(os.environ.get("WR_URL") or project_url or config.url or DEFAULT_URL)
    return Credentials(url=url, token=token_for(url, config))


def token_for(url: str, config: UserConfig | None = None) -> str | None:
    config = config or UserConfig.load()
    return os.environ.get("WR_TOKEN") or config.tokens.get(url) or None
