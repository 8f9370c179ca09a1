"""`deployer demo`: the whole flow on this machine, loopback only.

Starts the sandbox (Docker engine, a registry on 127.0.0.1:15000, a private nginx), runs
`deployer serve` with the example config, pushes demo v1 then v2 and sends a Docker Hub-format
webhook for each, and shows v2 served through nginx.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import requests

from deployer.backends.base import LABEL_INSTANCE
from deployer.config import load_config
from deployer.errors import DeployerError
from deployer.models import FINISHED_STATES
from deployer.sandbox import ImageFactory, LocalRegistry, SandboxNginx, ensure_engine
from deployer.sandbox.engine import SANDBOX_DIR, remove_instance_containers
from deployer.sandbox.net import http_get, wait_for_http

DEMO_DIR = Path("var/demo")
NGINX_PORT = 18080


def say(text: str) -> None:
    sys.stdout.write(f"demo: {text}\n")
    sys.stdout.flush()


def interrupt(number: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class DemoRefused(DeployerError):
    """The demo will not run here; the message says why and what to do."""


def instance_containers(instance: str) -> list[str]:
    """Names of the containers labelled deployer.instance=instance (all states)."""
    listing = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            f"label={LABEL_INSTANCE}={instance}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return listing.stdout.split()


def refuse_a_busy_instance(
    instance: str, list_containers: Callable[[str], list[str]] = instance_containers
) -> None:
    """The demo removes every container of its instance at exit: it must own all of them."""
    found = list_containers(instance)
    if found:
        raise DemoRefused(
            f"the demo's config uses instance {instance!r}, which has containers the demo did "
            f"not create ({', '.join(found)}); the demo removes every container of its instance "
            "when it ends, so it will not run here. Use a config with another `instance:`, or "
            f"remove them: docker rm -f $(docker ps -aq --filter label={LABEL_INSTANCE}={instance})"
        )


def run_demo(config_path: Path, exit_after: bool) -> int:
    """Run the demo; return 0 when v2 ends up served through nginx."""
    signal.signal(signal.SIGTERM, interrupt)  # clean up on SIGTERM as on Ctrl-C
    token = os.environ.get("DEPLOYER_TOKEN") or secrets.token_urlsafe(32)
    environ = {**os.environ, "DEPLOYER_TOKEN": token, "DEPLOYER_CONFIG": str(config_path)}
    config = load_config(config_path, environ)
    service_name, service = next(iter(config.services.items()))
    registry_port = int(service.image.split("/", 1)[0].rsplit(":", 1)[1])
    say(f"Docker engine {ensure_engine(SANDBOX_DIR / 'dockerd.log')}")
    refuse_a_busy_instance(config.instance)
    registry = LocalRegistry(DEMO_DIR.absolute() / "registry", port=registry_port).start()
    nginx = SandboxNginx(
        DEMO_DIR / "nginx", list(config.services), config.nginx.output, {service_name: NGINX_PORT}
    ).start()
    say(f"registry on {registry.address}, nginx on http://127.0.0.1:{NGINX_PORT}/")
    server = subprocess.Popen([sys.executable, "-m", "deployer", "serve"], env=environ)
    base = f"http://{config.server.host}:{config.server.port}"
    try:
        wait_for_http(f"{base}/healthz", timeout=30)
        images = ImageFactory(
            registry.address, service.repository.split("/")[0], DEMO_DIR / "build"
        )
        name = service.repository.split("/", 1)[1]
        for version in ("v1", "v2"):
            pushed = images.build(name, version, tag=service.tag)
            images.remove_local(pushed)  # so that deployer's pull is a real pull
            say(f"pushed {pushed.reference} ({version}) = {pushed.digest}")
            deploy_and_report(base, token, service.repository, service.tag)
            say(f"through nginx: GET /version -> {http_get(nginx.url(service_name, '/version'))}")
        say(f"status page: {base}/   JSON: {base}/status   metrics: {base}/metrics")
        say(f"CLI: .venv/bin/deployer status   .venv/bin/deployer history {service_name}")
        if environ.get(config.admin.token_env):
            say(f"roll back to v1: .venv/bin/deployer rollback {service_name} --wait")
        else:
            say(f"to try a rollback, set {config.admin.token_env} (16+ chars) before the demo")
        served = http_get(nginx.url(service_name, "/version"))
        if not exit_after:
            say("running; press Ctrl-C to stop")
            server.wait()
        return 0 if served == (200, "v2\n") else 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(server)
        nginx.stop()
        registry.stop()
        remove_instance_containers(config.instance)


def deploy_and_report(base: str, token: str, repository: str, tag: str) -> None:
    """Send a Docker Hub push webhook and print the deployment's steps when it ends."""
    answer = requests.post(
        f"{base}/webhooks/dockerhub/{token}", json=dockerhub_payload(repository, tag), timeout=10
    )
    answer.raise_for_status()
    for queued in answer.json()["deployments"]:
        deployment = wait_for_deployment(base, queued["id"])
        say(f"deployment {deployment['id']} of {deployment['service']}: {deployment['state']}")
        for step in deployment["steps"]:
            say(f"  {step['name']:<8} {step['state']:<9} {step['detail']}")
        if deployment["error"]:
            say(f"  error: {deployment['error']}")


def wait_for_deployment(base: str, deployment_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        deployment: dict[str, Any] = requests.get(
            f"{base}/deployments/{deployment_id}", timeout=5
        ).json()
        if deployment["state"] in FINISHED_STATES or time.monotonic() > deadline:
            return deployment
        time.sleep(0.3)


def dockerhub_payload(repository: str, tag: str) -> dict[str, Any]:
    """A Docker Hub push webhook body, as Docker Hub sends it."""
    namespace, name = repository.split("/", 1)
    return {
        "callback_url": f"https://registry.hub.docker.com/u/{repository}/hook/demo/",
        "push_data": {"pushed_at": int(time.time()), "pusher": "demo", "tag": tag, "images": None},
        "repository": {
            "repo_name": repository,
            "namespace": namespace,
            "name": name,
            "owner": namespace,
            "status": "Active",
            "is_private": False,
            "is_official": False,
            "star_count": 0,
        },
    }


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(2)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
