"""`deployer serve` as a child process, for tests that SIGKILL it mid-deployment and restart it.

Writes the config (a dict, as YAML) once, runs `python -m deployer serve --config PATH` with
the test's environment (tokens; DOCKER_HOST of an EngineProxy), waits for GET /healthz, and
keeps the output of every run in one log file. `kill()` is SIGKILL (no clean-up runs);
`restart()` starts it again on the same config, state directory and port. The working directory
is inherited: relative paths in the config (the default nginx template) resolve from there.

    serve = ServeProcess(config, tmp_path, {"DEPLOYER_TOKEN": TOKEN, **proxy.environ()})
    serve.start()
    first = serve.push("t1234/web")                       # Docker Hub webhook for :latest
    serve.wait_for_state(first)                           # a finished state, JSON returned
    second = serve.push("t1234/web")
    serve.wait_for_step(second, "healthy")                # the step is running now
    serve.kill()
    serve.restart()
    assert serve.wait_for_state(second)["state"] == "failed"
    serve.output(run=-1)                                  # what the restarted one logged

`config["server"]["port"]` defaults to a free port; `config["server"]["host"]` to 127.0.0.1.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import requests
import yaml

from deployer.demo import dockerhub_payload
from deployer.models import FINISHED_STATES
from deployer.sandbox.net import LOOPBACK, free_port
from deployer.sandbox.registry import repository_path

RUN_MARKER = "--- deployer.sandbox.serve: run "
POLL = 0.02  # seconds between polls of GET /deployments/<id>


class ServeProcess:
    """One `deployer serve` process at a time over one config; see the module docstring."""

    def __init__(
        self, config: Mapping[str, Any], directory: Path, environ: Mapping[str, str]
    ) -> None:
        data = copy.deepcopy(dict(config))
        server = data.setdefault("server", {})
        server.setdefault("host", LOOPBACK)
        server.setdefault("port", free_port())
        self.config = data
        self.base_url = f"http://{server['host']}:{server['port']}"
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "deployer.yml"
        self.config_path.write_text(yaml.safe_dump(data))
        self.log_path = directory / "serve.log"
        self.environ = {**os.environ, "PYTHONUNBUFFERED": "1", **environ}
        self.runs = 0
        self._process: subprocess.Popen[bytes] | None = None

    # the process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The last run's exit status (negative: killed by that signal); None while it runs."""
        return None if self._process is None else self._process.poll()

    def start(self, timeout: float = 30.0) -> ServeProcess:
        """Start serving and wait until GET /healthz answers 200."""
        if self.running:
            raise RuntimeError(f"deployer serve already runs (pid {self.pid})")
        self.runs += 1
        with self.log_path.open("ab") as log:
            log.write(f"{RUN_MARKER}{self.runs} ---\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "deployer", "serve", "--config", str(self.config_path)],
                env=self.environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_until_healthy(timeout)
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("deployer serve was never started")
        return self._process.pid

    def kill(self) -> int:
        """SIGKILL (nothing runs on the way out); return the exit status."""
        return self.signal(signal.SIGKILL)

    def terminate(self, timeout: float = 15.0) -> float:
        """SIGTERM and wait; return the seconds it took to exit (SIGKILL after timeout)."""
        began = time.monotonic()
        try:
            self.signal(signal.SIGTERM, timeout)
        except subprocess.TimeoutExpired as err:
            self.kill()
            raise TimeoutError(f"deployer serve did not exit within {timeout:g} s") from err
        return time.monotonic() - began

    def signal(self, number: int, timeout: float = 15.0) -> int:
        """Send a signal and wait for the process to exit; return its exit status."""
        if self._process is None:
            raise RuntimeError("deployer serve was never started")
        if self._process.poll() is None:
            self._process.send_signal(number)
        return self._process.wait(timeout)

    def restart(self, timeout: float = 30.0) -> ServeProcess:
        """SIGKILL the running process if any, then start again on the same config."""
        if self.running:
            self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        """For clean-up: SIGKILL if still running."""
        if self.running:
            self.kill()

    def output(self, run: int | None = None) -> str:
        """All runs' output, or one run's (1 = first, -1 = latest)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        if run is None:
            return text
        parts = text.split(RUN_MARKER)[1:]
        return parts[run - 1 if run > 0 else run].split("\n", 1)[1]

    def _wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(
                    f"deployer serve exited with status {self.returncode} before answering "
                    f"/healthz; output:\n{self.output(run=-1)[-3000:]}"
                )
            try:
                answer = requests.get(f"{self.base_url}/healthz", timeout=1)
                if answer.status_code == 200:
                    return
                last = f"HTTP {answer.status_code}"
            except requests.RequestException as err:
                last = str(err)
            time.sleep(0.05)
        raise TimeoutError(f"{self.base_url}/healthz did not answer 200 in {timeout:g} s: {last}")

    # the HTTP API

    def get(self, path: str) -> Any:
        """GET a JSON document from the API (raises on a non-2xx answer)."""
        answer = requests.get(f"{self.base_url}{path}", timeout=5)
        answer.raise_for_status()
        return answer.json()

    def push(self, repository: str, tag: str = "latest") -> str:
        """Send a Docker Hub webhook for repository:tag; return the deployment id.

        `repository` is `ns/name`, or `host:port/ns/name` (the host is left out of the hook).
        """
        repository = repository_path(repository)
        token_env = self.config.get("webhooks", {}).get("token_env", "DEPLOYER_TOKEN")
        answer = requests.post(
            f"{self.base_url}/webhooks/dockerhub/{self.environ[token_env]}",
            json=dockerhub_payload(repository, tag),
            timeout=5,
        )
        deployments = answer.json().get("deployments") if answer.status_code == 202 else None
        if not deployments:
            raise RuntimeError(f"webhook for {repository}:{tag} started nothing: {answer.text}")
        deployment_id: str = deployments[0]["id"]
        return deployment_id

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        """GET /deployments/<id>."""
        found: dict[str, Any] = self.get(f"/deployments/{deployment_id}?format=json")
        return found

    def wait_for_step(
        self, deployment_id: str, step: str, state: str = "running", timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait until the deployment's step `step` is in `state`; return the deployment."""

        def reached(found: dict[str, Any]) -> bool:
            return any(s["name"] == step and s["state"] == state for s in found["steps"])

        return self._wait(deployment_id, reached, f"step {step} {state}", timeout)

    def wait_for_state(
        self, deployment_id: str, states: Collection[str] = FINISHED_STATES, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Wait until the deployment is in one of `states` (default: finished); return it."""
        return self._wait(
            deployment_id, lambda found: found["state"] in states, f"state in {states}", timeout
        )

    def _wait(
        self,
        deployment_id: str,
        reached: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        found: dict[str, Any] = {}
        while time.monotonic() < deadline:
            found = self.deployment(deployment_id)
            if reached(found):
                return found
            if found["state"] in FINISHED_STATES:
                break
            time.sleep(POLL)
        steps = [(s["name"], s["state"]) for s in found.get("steps", [])]
        raise TimeoutError(
            f"deployment {deployment_id} never reached {what}: state {found.get('state')}, "
            f"steps {steps}, error {found.get('error')}"
        )
