"""webreducer/settings.py reads the environment a fresh process starts with: each case starts
Python anew, as the servers do, and prints the setting it then has."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT


def settings_in_new_process(*names: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Prints the settings `names` as a Python list."""
    base = {k: v for k, v in os.environ.items() if not k.endswith("_FILE")}
    for variable in ("SECRET_KEY", "WR_SECRETS_KEYS", "EMAIL_HOST_PASSWORD"):
        base.pop(variable, None)
    code = f"from django.conf import settings; print([getattr(settings, n) for n in {names!r}])"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "webreducer.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_secret_can_come_from_the_file_a_docker_secret_mounts(tmp_path: Path) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("from-a-docker-secret\n")

    result = settings_in_new_process("SECRET_KEY", SECRET_KEY_FILE=str(secret))

    assert result.stdout.strip() == "['from-a-docker-secret']", result.stderr


def test_the_secrets_keys_can_come_from_a_file_too(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("first-key,second-key\n")

    result = settings_in_new_process("WR_SECRETS_KEYS", WR_SECRETS_KEYS_FILE=str(keys))

    assert result.stdout.strip() == "[['first-key', 'second-key']]", result.stderr


def test_a_secret_set_both_ways_stops_start_up(tmp_path: Path) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("one")

    result = settings_in_new_process("SECRET_KEY", SECRET_KEY="two", SECRET_KEY_FILE=str(secret))

    assert result.returncode != 0
    assert "Set SECRET_KEY or SECRET_KEY_FILE, not both." in result.stderr


def test_a_secret_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    result = settings_in_new_process("EMAIL_HOST_PASSWORD", EMAIL_HOST_PASSWORD_FILE=str(missing))

    assert result.returncode != 0
    assert f"EMAIL_HOST_PASSWORD_FILE: cannot read {missing}" in result.stderr


def test_the_sandboxs_warm_children_follow_their_documented_variables() -> None:
    result = settings_in_new_process(
        "WR_SANDBOX_WARM_SECONDS",
        "WR_SANDBOX_WARM_MAX",
        "WR_SANDBOX_WARM_MAX_CALLS",
        WR_SANDBOX_WARM_SECONDS="0",
        WR_SANDBOX_WARM_MAX="3",
        WR_SANDBOX_WARM_MAX_CALLS="7",
    )

    assert result.stdout.strip() == "[0.0, 3, 7]", result.stderr
