"""The peers: Debian's `webhook` (adnanh/webhook) running a deploy script on each push.

- `script`: the classic hand-written deploy, `docker pull`, `docker stop`, `docker rm`,
  `docker run` on the one host port nginx proxies to;
- `compose`: Debian's docker-compose, `docker-compose pull && docker-compose up -d`.

Each has its own webhook server and nginx. The script records its exit status and time in
`<label>.done` (the "finished" time). The hook runs only for tag `latest` with the right token;
a push of another tag is answered and ignored (the ack probe).
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.acks import Probe, post
from bench.rounds import Finish
from bench.testbed import SERVICE, run_argv, start_fixed_nginx
from deployer.demo import dockerhub_payload
from deployer.sandbox import ImageFactory, SandboxNginx, free_port
from deployer.sandbox.net import LOOPBACK, accepts_connections
from deployer.sandbox.process import SandboxProcess

HOOK = "deploy"
# At exit: `<status> <epoch seconds>` into the done file, renamed into place whole.
RECORD_END = 'echo "$? $(date +%s.%N)" > "$done_file.tmp"; mv "$done_file.tmp" "$done_file"'
PROBE_TAG = "bench-probe"


def shell_line(argv: list[str], may_fail: bool = False) -> str:
    """One script line running argv; `|| true` when its failure is expected (pure)."""
    return shlex.join(argv) + (" || true" if may_fail else "")


def make_script(done_dir: Path, commands: list[str]) -> str:
    """A deploy script running `commands` (shell lines) that records its end (pure).

    `<exit status> <epoch seconds>` goes to DONE_DIR/$1.done when the script exits.
    """
    lines = [
        "#!/bin/sh",
        "# Written by bench/hook_stacks.py: run by webhook with the round's label as $1.",
        f'done_file={shlex.quote(str(done_dir))}/"$1.done"',
        f"trap {shlex.quote(RECORD_END)} EXIT",
        "set -e",
        *commands,
    ]
    return "\n".join(lines) + "\n"


def pull_run_commands(image: str, container: str, port: int, instance: str) -> list[str]:
    """docker pull, stop, rm, run: the hand-written deploy (stop and rm may find nothing)."""
    return [
        shell_line(["docker", "pull", "--quiet", image]),
        shell_line(["docker", "stop", container], may_fail=True),
        shell_line(["docker", "rm", container], may_fail=True),
        shell_line(run_argv(image, container, port, instance)),
    ]


def make_compose_file(image: str, port: int, instance: str) -> dict[str, Any]:
    """The compose file: one service on host networking, labelled for clean-up (pure)."""
    service = {
        "image": image,
        "network_mode": "host",
        "environment": {"PORT": str(port)},
        "labels": {"deployer.instance": instance},
    }
    return {"version": "2.4", "services": {SERVICE: service}}


def compose_commands(compose_file: Path, project: str) -> list[str]:
    """docker-compose pull, then up -d (recreates the container when the image changed)."""
    base = ["docker-compose", "--project-name", project, "--file", str(compose_file)]
    return [shell_line([*base, "pull", "--quiet"]), shell_line([*base, "up", "--detach"])]


def make_hooks(script: Path, token: str) -> list[dict[str, Any]]:
    """webhook's hooks file: run `script LABEL` for a push of `latest` with the token (pure)."""

    def match(value: str, source: str, name: str) -> dict[str, Any]:
        parameter = {"source": source, "name": name}
        return {"match": {"type": "value", "value": value, "parameter": parameter}}

    return [
        {
            "id": HOOK,
            "execute-command": str(script),
            "command-working-directory": str(script.parent),
            "pass-arguments-to-command": [{"source": "url", "name": "round"}],
            "trigger-rule": {
                "and": [match(token, "url", "token"), match("latest", "payload", "push_data.tag")]
            },
        }
    ]


@dataclass(frozen=True)
class HookStackPlan:
    """What differs between the peers: name, image name, app port and the script's commands."""

    name: str
    app: str
    port: int
    commands: list[str]


class HookStack:
    """A webhook server running a deploy script, and an nginx fixed on the app's port."""

    def __init__(self, plan: HookStackPlan, directory: Path) -> None:
        self.name = plan.name
        self.app = plan.app
        self.directory = directory
        self.done_dir = directory / "done"
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        script = directory / "deploy.sh"
        self.done_dir.mkdir(parents=True, exist_ok=True)
        script.write_text(make_script(self.done_dir, plan.commands))
        script.chmod(0o755)
        hooks = directory / "hooks.json"
        hooks.write_text(json.dumps(make_hooks(script, self.token), indent=2))
        self.server = SandboxProcess(
            "webhook",
            ["webhook", "-hooks", str(hooks), "-ip", LOOPBACK, "-port", str(self.port), "-verbose"],
            directory / "webhook.log",
            own_session=True,  # as a service manager starts it (see SandboxProcess)
        )
        self._app_port = plan.port
        self.nginx: SandboxNginx | None = None

    def start(self) -> HookStack:
        if shutil.which("webhook") is None:
            raise RuntimeError("webhook is not installed: run bench.peers as root to install it")
        self.nginx = start_fixed_nginx(self.directory / "nginx", self._app_port)
        self.server.start()
        deadline = time.monotonic() + 10
        while not accepts_connections(self.port):
            self.server.check_alive()
            if time.monotonic() > deadline:
                tail = self.server.log_tail()
                raise RuntimeError(f"webhook did not listen on {self.port}: {tail}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.stop()
        if self.nginx is not None:
            self.nginx.stop()

    def url(self) -> str:
        assert self.nginx is not None, "start() first"
        return self.nginx.url(SERVICE, "/version")

    def _webhook(self, tag: str, label: str) -> tuple[str, bytes]:
        query = f"token={self.token}" + (f"&round={label}" if label else "")
        body = json.dumps(dockerhub_payload(f"bench/{self.app}", tag)).encode()
        return f"http://{LOOPBACK}:{self.port}/hooks/{HOOK}?{query}", body

    def probe(self) -> Probe:
        return Probe(*self._webhook(PROBE_TAG, ""), status=200)

    def trigger(self, label: str) -> float:
        status, answer, seconds = post(*self._webhook("latest", label))
        if status != 200:
            raise RuntimeError(f"webhook answered HTTP {status}: {answer!r}")
        return seconds

    def finish(self, label: str, timeout: float = 120.0) -> Finish:
        done = self.done_dir / f"{label}.done"
        deadline = time.monotonic() + timeout
        while not done.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {done} not written within {timeout:g} s")
            time.sleep(0.02)
        status, finished = done.read_text().split()
        return Finish(float(finished), "succeeded" if status == "0" else f"failed (exit {status})")


def script_plan(images: ImageFactory, instance: str) -> HookStackPlan:
    """The pull/stop/rm/run script's stack."""
    port = free_port()
    image = f"{images.repository('script')}:latest"
    commands = pull_run_commands(image, f"{instance}-script", port, instance)
    return HookStackPlan("script", "script", port, commands)


def compose_plan(images: ImageFactory, instance: str, directory: Path) -> HookStackPlan:
    """The docker-compose stack; writes its compose file into `directory`."""
    port = free_port()
    compose_file = directory / "docker-compose.yml"
    compose_file.parent.mkdir(parents=True, exist_ok=True)
    image = f"{images.repository('compose')}:latest"
    compose_file.write_text(yaml.safe_dump(make_compose_file(image, port, instance)))
    project = instance.replace("-", "").lower() + "compose"
    return HookStackPlan("compose", "compose", port, compose_commands(compose_file, project))
