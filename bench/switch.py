"""Benchmark: a v(N) -> v(N+1) switch under steady load through nginx, on the local test bed.

Runs `deployer serve` as a process against the real engine, a local registry and a private
nginx (all on 127.0.0.1), deploys v1, then for each round pushes the next version (the local copy
removed, so the pull is a real pull), sends a Docker Hub webhook and measures:

- requests answered OK and failed through nginx from the webhook until the deployment finished
  (drain and retire included), from `--clients` client threads on fresh connections;
- the time from the webhook to the first answer of the new version through nginx;
- each step's duration as recorded by deployer (resolve, pull, start, healthy, nginx, drain,
  retire), and the time queued (the coalesce window).

Prints a Markdown report; `--write bench/RESULTS.md` also saves it.
    .venv/bin/python bench/switch.py --rounds 5 --write bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from deployer.demo import dockerhub_payload
from deployer.models import FINISHED_STATES
from deployer.sandbox import ImageFactory, LocalRegistry, SandboxNginx, ensure_engine, free_port
from deployer.sandbox.engine import SANDBOX_DIR, remove_instance_containers
from deployer.sandbox.net import http_get, wait_for_http
from deployer.sandbox.process import SandboxProcess

STEPS = ("resolve", "pull", "start", "healthy", "nginx", "drain", "retire")
INSTANCE = "bench"
MAX_REQUESTS = 1_000_000  # load is bounded in count as well as in time
ROUND_TIMEOUT = 120.0


@dataclass
class Load:
    """Client threads sending GETs through nginx, each answer stamped with its start time."""

    url: str
    clients: int
    answers: list[tuple[float, str]] = field(default_factory=list)  # (began, version | error)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._run) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def between(self, first: float, last: float) -> list[tuple[float, str]]:
        with self._lock:
            return [answer for answer in self.answers if first <= answer[0] <= last]

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.answers) < MAX_REQUESTS:
            began = time.time()
            try:
                status, body = http_get(self.url, timeout=5)
                outcome = body.strip() if status == 200 else f"error: HTTP {status}"
            except OSError as err:
                outcome = f"error: {type(err).__name__}"
            with self._lock:
                self.answers.append((began, outcome))


@dataclass
class Round:
    version: str
    queued: float
    steps: dict[str, float]
    to_served: float | None
    total: float
    ok: int
    failed: int
    errors: list[str]
    state: str


def seconds_between(start: str | None, end: str | None) -> float:
    if start is None or end is None:
        return float("nan")
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_round(
    base: str, token: str, images: ImageFactory, repository: str, load: Load, version: str
) -> Round:
    pushed = images.build("web", version, tag="latest")
    images.remove_local(pushed)  # the deployment's pull fetches it from the registry
    sent = time.time()
    answer = requests.post(
        f"{base}/webhooks/dockerhub/{token}",
        json=dockerhub_payload(repository, "latest"),
        timeout=10,
    )
    answer.raise_for_status()
    deployment_id = answer.json()["deployments"][0]["id"]
    while True:
        found: dict[str, Any] = requests.get(
            f"{base}/deployments/{deployment_id}", timeout=5
        ).json()
        if found["state"] in FINISHED_STATES:
            break
        time.sleep(0.05)
    finished = time.time()
    window = load.between(sent, finished)
    served = [began for began, outcome in load.between(sent, finished + 5) if outcome == version]
    errors = [outcome for _, outcome in window if outcome.startswith("error")]
    return Round(
        version=version,
        queued=seconds_between(found["created_at"], found["started_at"]),
        steps={
            s["name"]: seconds_between(s["started_at"], s["finished_at"]) for s in found["steps"]
        },
        to_served=min(served) - sent if served else None,
        total=finished - sent,
        ok=len(window) - len(errors),
        failed=len(errors),
        errors=sorted(set(errors)),
        state=found["state"],
    )


def machine() -> list[str]:
    """What the numbers were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs ({cpu}), "
        f"{memory_kb // 1024} MiB RAM",
        f"- Docker Engine {docker}, {nginx.stderr.strip()}, Python {platform.python_version()}",
    ]


def report(rounds: list[Round], args: argparse.Namespace) -> str:
    head = ["switch", "state", "queued", *STEPS, "webhook->served", "total", "OK", "failed"]
    lines = [
        "# Benchmark: switch under load through nginx",
        "",
        *machine(),
        f"- command: `.venv/bin/python bench/switch.py --rounds {args.rounds} "
        f"--clients {args.clients} --coalesce {args.coalesce:g} --drain {args.drain:g}`",
        f"- load: {args.clients} client threads, one fresh connection per GET /version through "
        "nginx, from the webhook until the deployment finished (drain and retire included)",
        "- times in seconds; `queued` is the coalesce window; `webhook->served` is the first "
        "answer of the new version through nginx",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for item in rounds:
        cells = [
            f"v{int(item.version[1:]) - 1}->{item.version}",
            item.state,
            f"{item.queued:.2f}",
            *[f"{item.steps.get(step, float('nan')):.3f}" for step in STEPS],
            "-" if item.to_served is None else f"{item.to_served:.2f}",
            f"{item.total:.2f}",
            str(item.ok),
            str(item.failed),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", summary(rounds)]
    return "\n".join(lines) + "\n"


def summary(rounds: list[Round]) -> str:
    served = [item.to_served for item in rounds if item.to_served is not None]
    errors = sorted({error for item in rounds for error in item.errors})
    return (
        f"**{sum(item.ok for item in rounds)} requests OK, "
        f"{sum(item.failed for item in rounds)} failed** over {len(rounds)} switches"
        + (f" (errors: {', '.join(errors)})" if errors else "")
        + (
            f"; webhook -> new version served: median {statistics.median(served):.2f} s, "
            f"of which the coalesce window {statistics.median(r.queued for r in rounds):.2f} s."
            if served
            else "."
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="switches to measure (default 5)")
    parser.add_argument("--clients", type=int, default=4, help="load threads (default 4)")
    parser.add_argument("--coalesce", type=float, default=2.0, help="queue.coalesce (default 2)")
    parser.add_argument("--drain", type=float, default=2.0, help="services.web.drain (default 2)")
    parser.add_argument("--write", metavar="PATH", help="also write the report to PATH")
    args = parser.parse_args()
    ensure_engine(SANDBOX_DIR / "dockerd.log")
    with tempfile.TemporaryDirectory(prefix="deployer-bench-") as scratch:
        text = bench(Path(scratch), args)
    sys.stdout.write(text)
    if args.write:
        Path(args.write).write_text(text)
    return 0


def bench(scratch: Path, args: argparse.Namespace) -> str:
    token = secrets.token_urlsafe(32)
    with LocalRegistry(scratch / "registry") as registry:
        nginx = SandboxNginx(scratch / "nginx", ["web"]).start()
        images = ImageFactory(registry.address, "bench", scratch / "build")
        port = free_port()
        config_path = scratch / "deployer.yml"
        config_path.write_text(yaml.safe_dump(make_config(scratch, nginx, images, port, args)))
        server = SandboxProcess(
            "deployer",
            [sys.executable, "-m", "deployer", "serve", "--config", str(config_path)],
            scratch / "deployer.log",
            environ={**os.environ, "DEPLOYER_TOKEN": token},
        )
        server.start()
        base = f"http://127.0.0.1:{port}"
        load = Load(nginx.url("web", "/version"), args.clients)
        try:
            wait_for_http(f"{base}/healthz", timeout=30)
            first = run_round(base, token, images, "bench/web", load, "v1")
            if first.state != "succeeded":
                raise SystemExit(f"first deployment {first.state}: {server.log_tail()}")
            load.start()
            rounds = [
                run_round(base, token, images, "bench/web", load, f"v{number}")
                for number in range(2, args.rounds + 2)
            ]
        finally:
            load.stop()
            server.stop()
            nginx.stop()
            remove_instance_containers(INSTANCE)
    return report(rounds, args)


def make_config(
    scratch: Path, nginx: SandboxNginx, images: ImageFactory, port: int, args: argparse.Namespace
) -> dict[str, Any]:
    """The shipped defaults, except paths, ports and the knobs given on the command line."""
    return {
        "server": {"host": "127.0.0.1", "port": port},
        "state_dir": str(scratch / "state"),
        "instance": INSTANCE,
        "queue": {"coalesce": args.coalesce},
        "nginx": nginx.deployer_config(),
        "services": {
            "web": {"image": images.repository("web"), "ports": "18500-18599", "drain": args.drain}
        },
    }


if __name__ == "__main__":
    sys.exit(main())
