"""deployer as a stack: `deployer serve` as a process, its own nginx, Docker Hub webhooks."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.acks import Probe, post
from bench.rounds import Finish
from deployer.demo import dockerhub_payload
from deployer.models import FINISHED_STATES
from deployer.sandbox import ImageFactory, SandboxNginx, free_port
from deployer.sandbox.net import wait_for_http
from deployer.sandbox.process import SandboxProcess

PORTS = "18500-18599"
PROBE_TAG = "bench-probe"  # a tag no service follows: authenticated, parsed, ignored
SERVICE = "web"


def seconds_between(start: str | None, end: str | None) -> float:
    """Seconds between two ISO timestamps; NaN when either is missing."""
    if start is None or end is None:
        return float("nan")
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def make_config(
    scratch: Path,
    nginx: SandboxNginx,
    image: str,
    port: int,
    instance: str,
    overrides: dict[str, float] | None = None,
) -> dict[str, Any]:
    """deployer's defaults, except what the sandbox needs and `overrides` (coalesce, drain)."""
    service: dict[str, Any] = {"image": image, "ports": PORTS}
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "state_dir": str(scratch / "state"),
        "instance": instance,
        "nginx": nginx.deployer_config(),
        "services": {SERVICE: service},
    }
    overrides = overrides or {}
    if "coalesce" in overrides:
        config["queue"] = {"coalesce": overrides["coalesce"]}
    if "drain" in overrides:
        service["drain"] = overrides["drain"]
    return config


def finish_of(deployment: dict[str, Any]) -> Finish:
    """A finished deployment's end, with its time queued and each step's duration."""
    details = {"queued": seconds_between(deployment["created_at"], deployment["started_at"])}
    for step in deployment["steps"]:
        details[step["name"]] = seconds_between(step["started_at"], step["finished_at"])
    finished = datetime.fromisoformat(deployment["finished_at"]).timestamp()
    return Finish(finished, deployment["state"], details)


class DeployerStack:
    """`deployer serve` with its default config, driving its own sandbox nginx."""

    name = "deployer"

    def __init__(
        self,
        scratch: Path,
        images: ImageFactory,
        instance: str,
        overrides: dict[str, float] | None = None,
        app: str = "deployer",
    ) -> None:
        self.app = app
        self.repository = f"{images.namespace}/{app}"
        self.scratch = scratch / "deployer"
        self.nginx = SandboxNginx(self.scratch / "nginx", [SERVICE], own_session=True)
        self.token = secrets.token_urlsafe(32)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        config = make_config(
            self.scratch, self.nginx, images.repository(app), port, instance, overrides
        )
        config_path = self.scratch / "deployer.yml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(config))
        self.server = SandboxProcess(
            "deployer",
            [sys.executable, "-m", "deployer", "serve", "--config", str(config_path)],
            self.scratch / "deployer.log",
            environ={**os.environ, "DEPLOYER_TOKEN": self.token},
            own_session=True,  # as a service manager starts it (see SandboxProcess)
        )
        self._deployments: dict[str, str] = {}

    def start(self) -> DeployerStack:
        self.nginx.start()
        self.server.start()
        wait_for_http(f"{self.base}/healthz", timeout=30)
        return self

    def stop(self) -> None:
        self.server.stop()
        self.nginx.stop()

    def url(self) -> str:
        return self.nginx.url(SERVICE, "/version")

    def _webhook(self, tag: str) -> tuple[str, bytes]:
        body = json.dumps(dockerhub_payload(self.repository, tag)).encode()
        return f"{self.base}/webhooks/dockerhub/{self.token}", body

    def probe(self) -> Probe:
        return Probe(*self._webhook(PROBE_TAG), status=202)

    def trigger(self, label: str) -> float:
        status, answer, seconds = post(*self._webhook("latest"))
        if status != 202:
            raise RuntimeError(f"deployer answered the webhook with HTTP {status}: {answer!r}")
        self._deployments[label] = json.loads(answer)["deployments"][0]["id"]
        return seconds

    def finish(self, label: str, timeout: float = 120.0) -> Finish:
        url = f"{self.base}/deployments/{self._deployments.pop(label)}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found: dict[str, Any] = requests.get(url, timeout=5).json()
            if found["state"] in FINISHED_STATES:
                return finish_of(found)
            time.sleep(0.1)
        raise TimeoutError(f"{url} did not finish within {timeout:g} s: {self.server.log_tail()}")
