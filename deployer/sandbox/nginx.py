"""A private nginx (Debian's nginx-light) on loopback, proxying one port per service.

The upstream blocks live in a separate file that the deployer owns; this module only writes
nginx.conf, which includes that file, and a `down` placeholder until the deployer writes it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from deployer.sandbox.net import LOOPBACK, accepts_connections, free_port
from deployer.sandbox.process import SandboxProcess, StartStop

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {pid_file};
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {upstreams};
{servers}}}
"""

SERVER_BLOCK = """\
    server {{
        listen {address};
        location / {{
            proxy_pass http://{service};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


def render_sandbox_conf(prefix: Path, upstreams: Path, listen: dict[str, int]) -> str:
    """nginx.conf text: one loopback server per service, proxying to its upstream."""
    servers = "".join(
        SERVER_BLOCK.format(address=f"{LOOPBACK}:{port}", service=service)
        for service, port in listen.items()
    )
    return NGINX_CONF.format(
        prefix=prefix, pid_file=prefix / "nginx.pid", upstreams=upstreams, servers=servers
    )


class SandboxNginx(StartStop):
    """nginx -p PREFIX -c PREFIX/nginx.conf, with argv lists to test and reload it."""

    def __init__(
        self,
        prefix: Path,
        services: list[str],
        upstreams: Path | None = None,
        listen: dict[str, int] | None = None,
        launcher: Sequence[str] = (),
        own_session: bool = False,
    ) -> None:
        self.prefix = prefix.absolute()
        self.conf = self.prefix / "nginx.conf"
        self.pid_file = self.prefix / "nginx.pid"
        self.upstreams = (
            upstreams or self.prefix / "conf.d" / "deployer-upstreams.conf"
        ).absolute()
        self.listen = listen or {service: free_port() for service in services}
        base = [
            "nginx",
            "-p",
            str(self.prefix),
            "-c",
            str(self.conf),
            "-e",
            str(self.prefix / "error.log"),
        ]
        self.test_argv = [*base, "-t", "-q"]
        self.reload_argv = [*base, "-s", "reload"]
        # launcher: what runs the server in, e.g. `docker run ... IMAGE` for nginx in a container.
        self._process = SandboxProcess(
            "nginx", [*launcher, *base], self.prefix / "nginx.out", own_session=own_session
        )

    def deployer_config(self) -> dict[str, str | list[str]]:
        """The `nginx:` section of a deployer config that drives this nginx."""
        return {
            "output": str(self.upstreams),
            "test": self.test_argv,
            "reload": self.reload_argv,
            "pid_file": str(self.pid_file),
        }

    def url(self, service: str, path: str = "/") -> str:
        """The loopback URL that reaches `service` through nginx."""
        return f"http://{LOOPBACK}:{self.listen[service]}{path}"

    def start(self) -> SandboxNginx:
        """Write nginx.conf (and a placeholder upstream file), test it and start nginx."""
        if shutil.which("nginx") is None:
            raise RuntimeError("nginx is not installed (Debian package nginx-light)")
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.upstreams.parent.mkdir(parents=True, exist_ok=True)
        if not self.upstreams.exists():
            placeholder = "".join(
                f"upstream {service} {{ server {LOOPBACK}:9 down; }}\n" for service in self.listen
            )
            self.upstreams.write_text(placeholder)
        self.conf.write_text(render_sandbox_conf(self.prefix, self.upstreams, self.listen))
        test = subprocess.run(self.test_argv, capture_output=True, text=True, check=False)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t failed for {self.conf}: {test.stderr.strip()}")
        self._process.start()
        self._wait_until_listening()
        return self

    def _wait_until_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.listen.values())
        while pending:
            self._process.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx did not listen on {sorted(pending)} within {timeout:g} s"
                )
            pending = {port for port in pending if not accepts_connections(port)}
            time.sleep(0.05)

    def error_log(self) -> str:
        """nginx's error log, for test failure messages."""
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop nginx."""
        self._process.stop()
