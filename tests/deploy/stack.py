"""docker-compose.yml's production shape on this machine, without Docker (issue 17, item 15).

`compose_services()` asks Debian's docker-compose for the resolved compose file (`config`:
it validates the file and interpolates its variables); `ProductionStack` then starts each
service's own command with its own environment, changing only what Docker would provide: the
addresses (PostgreSQL, Redis and the ports of this test run instead of the service names) and
the paths (a temporary directory instead of /tmp and /etc/nginx). nginx runs deploy/nginx.conf
with the upstreams and the listening port templated in.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography.fernet import Fernet

from tests.servers import ROOT, Process, child_env, free_port, wait_for

COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
# What compose's services are called in deploy/nginx.conf's upstreams, and the ports they
# listen on inside their containers.
WEB_UPSTREAM = "http://web:8000"
REALTIME_UPSTREAM = "http://realtime:8001"


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    assert found, (
        "docker-compose is not installed (Debian's package docker-compose; .ci/run installs it)"
    )
    return found


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    assert found, "nginx is not installed (Debian's package nginx; .ci/run installs it)"
    return found


def compose_config(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` of the repository's compose file with these variables set."""
    env = {"PATH": os.environ.get("PATH", ""), **variables}
    return subprocess.run(
        [docker_compose(), "-f", str(COMPOSE_FILE), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def compose_services(variables: dict[str, str]) -> dict[str, Any]:
    """The services of the compose file as docker-compose resolves them."""
    result = compose_config(variables)
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return services


def localized(command: list[str], *, port: int | None = None, directory: Path) -> list[str]:
    """A service's command as run here: this venv's executables, 127.0.0.1 and `port` instead
    of 0.0.0.0 and the container's port, `directory` instead of /tmp."""
    program = command[0]
    venv = Path(sys.executable).parent
    args = [sys.executable if program == "python" else str(venv / program)]
    for arg in command[1:]:
        if arg.startswith("0.0.0.0:"):
            assert port is not None, command
            arg = f"127.0.0.1:{port}"
        elif arg == "0.0.0.0":
            arg = "127.0.0.1"
        elif arg.startswith("/tmp/"):
            arg = str(directory / arg.removeprefix("/tmp/"))
        elif args[-1] == "--port":
            assert port is not None, command
            arg = str(port)
        args.append(arg)
    return args


def nginx_config(directory: Path, *, port: int, web: int, realtime: int) -> Path:
    """deploy/nginx.conf inside a main configuration of nginx's own, everything under
    `directory`: the compose file's proxy mounts deploy/nginx.conf as conf.d/default.conf of
    the nginx image, which includes it in its `http` block in the same way."""
    site = NGINX_CONF.read_text()
    for upstream, local in ((WEB_UPSTREAM, web), (REALTIME_UPSTREAM, realtime)):
        assert upstream in site, f"deploy/nginx.conf no longer proxies to {upstream}"
        site = site.replace(upstream, f"http://127.0.0.1:{local}")
    assert "listen 80 default_server;" in site and "listen 80;" in site
    site = site.replace("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (directory / "default.conf").write_text(site)
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / name).mkdir(exist_ok=True)
    main = directory / "nginx.conf"
    main.write_text(
        f"""
daemon off;
master_process off;  # one process, as the user who runs the tests: no user switch
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/default.conf;
}}
"""
    )
    return main


@dataclass
class ProductionStack:
    """migrate, web, realtime, worker and beat started from the compose file, behind nginx."""

    directory: Path
    port: int = field(default_factory=free_port)
    processes: dict[str, Process] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    migrate_output: str = ""
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))
    secrets_keys: str = field(default_factory=lambda: Fernet.generate_key().decode())

    @property
    def app(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def variables(self) -> dict[str, str]:
        """What an operator sets for compose (its ${...} variables)."""
        return {
            "SECRET_KEY": self.secret_key,
            "WR_SECRETS_KEYS": self.secrets_keys,
            "SITE_ROOT": self.app,
            "WR_PUBLIC_ORIGIN": self.public,
            "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        }

    def environment(self, service: str) -> dict[str, str]:
        env = {k: str(v) for k, v in self.services[service]["environment"].items()}
        # The service names of PostgreSQL and Redis: this test run's database and Redis instead.
        assert env.pop("DATABASE_URL").startswith("postgres://")
        assert env.pop("REDIS_URL").startswith("redis://")
        return child_env(**env)

    def start(self, stack: ExitStack) -> None:
        self.services = compose_services(self.variables())
        migrate = subprocess.run(
            localized(self.services["migrate"]["command"], directory=self.directory),
            cwd=ROOT,
            env=self.environment("migrate"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        self.migrate_output = migrate.stdout
        web, realtime = free_port(), free_port()
        for name, port in (("web", web), ("realtime", realtime), ("worker", None), ("beat", None)):
            command = localized(self.services[name]["command"], port=port, directory=self.directory)
            process = Process(command, self.environment(name), self.directory / f"{name}.log")
            self.processes[name] = process
            stack.callback(process.stop)
        conf = nginx_config(self.directory, port=self.port, web=web, realtime=realtime)
        nginx = Process(
            [nginx_binary(), "-p", str(self.directory), "-c", str(conf)],
            dict(os.environ),
            self.directory / "nginx.log",
        )
        self.processes["proxy"] = nginx
        stack.callback(nginx.stop)
        for name, port in (("web", web), ("realtime", realtime)):
            wait_for(lambda p=port: _answers(f"http://127.0.0.1:{p}"), 60, f"the {name} server")
        wait_for(lambda: _answers(self.public), 30, "nginx")
        wait_for(lambda: "ready." in self.processes["worker"].output(), 60, "the Celery worker")

    def log(self, name: str) -> str:
        return self.processes[name].output()

    def log_file(self, name: str) -> str:
        path = self.directory / name
        return path.read_text(errors="replace") if path.exists() else ""


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/read/none", timeout=1, headers={"Host": "127.0.0.1"})
        return True
    except httpx.HTTPError:
        return False
