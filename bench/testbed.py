"""Test-bed pieces the stacks share: an nginx with a fixed upstream, docker calls, clean-up."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deployer.sandbox import SandboxNginx
from deployer.sandbox.net import LOOPBACK

SERVICE = "web"  # every stack's nginx proxies its app as upstream `web`


def render_fixed_upstream(port: int) -> str:
    """The upstream file of an nginx that always proxies to one app port (pure)."""
    return f"upstream {SERVICE} {{ server {LOOPBACK}:{port}; }}\n"


def start_fixed_nginx(prefix: Path, port: int) -> SandboxNginx:
    """A sandbox nginx proxying upstream `web` to 127.0.0.1:port, as the peers' docs do."""
    nginx = SandboxNginx(prefix, [SERVICE], own_session=True)  # a service of its own
    nginx.upstreams.parent.mkdir(parents=True, exist_ok=True)
    nginx.upstreams.write_text(render_fixed_upstream(port))
    return nginx.start()


def run_argv(image: str, container: str, port: int, instance: str) -> list[str]:
    """`docker run` of a test app on host networking at `port`, labelled for clean-up (pure)."""
    return [
        "docker", "run", "--detach", "--name", container, "--network", "host",
        "--env", f"PORT={port}", "--label", f"deployer.instance={instance}", image,
    ]  # fmt: skip


def docker(*args: str) -> str:
    """Run the docker CLI; its stdout, or RuntimeError with its stderr."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout
