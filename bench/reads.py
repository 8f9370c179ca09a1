"""Benchmark: the read endpoints at scale (100 services; 0, 100 and 100,000 history rows).

deployer's app built in this process (the Flask test client, no network), a fake engine (reads
never call the engine), a real SQLite history under a temporary state folder filled with
finished deployments of 7 steps each. Prints p50 per endpoint and page size, and the issue's
targets at 100 services and 100k rows: /status < 10 ms, / < 50 ms, /deployments?limit=20
within 2x of its time on an empty history. GET /healthz is Flask's own floor here. Repeated
reads of a page reuse the finished deployments' JSON (deployer keeps it encoded), so the
first read of a page is timed apart: with nothing kept, every listed deployment is loaded
and encoded.

    .venv/bin/python -m bench.reads --write bench/READS.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.machine import load_average, machine
from bench.stats import markdown_table, median
from deployer import create_app
from deployer.config import parse_config
from deployer.models import Deployment, DeploymentState, Step, StepState, utc_now
from tests.fakes import FakeBackend, FakeNginxCommands

SERVICES = 100
SMALL = 100  # rows: every page full, the history small
STEPS = ("resolve", "pull", "start", "healthy", "nginx", "drain", "retire")
PATHS = (
    "/status",
    "/",
    "/deployments?limit=20",
    "/deployments?service=svc042&limit=20",
    "/healthz",
)
FIRST_READ = "/deployments?limit=20 (first read)"
TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (a throwaway for the in-process app)


def make_app(state: Path) -> Any:
    """deployer with SERVICES services on a fake engine, history in `state`."""
    services = {
        f"svc{number:03d}": {
            "image": f"registry.example.com/acme/svc{number:03d}",
            "ports": f"{20000 + number * 10}-{20009 + number * 10}",
        }
        for number in range(SERVICES)
    }
    environ = {"DEPLOYER_TOKEN": TOKEN}
    config = parse_config(
        {
            "state_dir": str(state),
            "nginx": {"output": str(state / "up.conf")},
            "services": services,
        },
        environ=environ,
    )
    backend = FakeBackend()
    return create_app(
        config,
        backend=backend,
        environ=environ,
        run=FakeNginxCommands(state / "up.conf"),
        probe=backend.probe,
        is_port_free=lambda port: True,
    )


def fill(app: Any, rows: int) -> None:
    """rows finished deployments spread over the services, oldest first. Written without
    waiting for the disk after each (a bench's shortcut: reads are what is timed)."""
    store, now = app.extensions["deployer"].store, utc_now()
    synchronous = store._db.execute("PRAGMA synchronous").fetchone()[0]
    store._db.execute("PRAGMA synchronous=OFF")
    try:
        write(store, rows, now)
    finally:
        store._db.execute(f"PRAGMA synchronous={int(synchronous)}")


def write(store: Any, rows: int, now: datetime) -> None:
    for number in range(rows):
        created = now - timedelta(seconds=rows - number)
        steps = [
            Step(name, StepState.SUCCEEDED, created, created + timedelta(seconds=0.1), "done")
            for name in STEPS
        ]
        store.save(
            Deployment(
                id=f"{number:012x}",
                service=f"svc{number % SERVICES:03d}",
                trigger="dockerhub push acme/app:latest",
                image="registry.example.com/acme/app",
                tag="latest",
                state=DeploymentState.SUCCEEDED,
                digest="sha256:" + f"{number % 16:x}" * 64,
                created_at=created,
                started_at=created,
                finished_at=created + timedelta(seconds=0.7),
                steps=steps,
            )
        )


def measure(app: Any, path: str, repeats: int) -> tuple[float, int]:
    """p50 milliseconds and size in bytes of GET path."""
    client, times, size = app.test_client(), [], 0
    for _ in range(repeats):
        began = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - began) * 1000)
        size = len(answer.data)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path} answered {answer.status_code}")
    return median(times), size


def measure_first_read(app: Any, path: str, repeats: int) -> tuple[float, int]:
    """p50 milliseconds and size of GET path with nothing kept from earlier reads: the kept
    JSON texts and finished documents are dropped before each (reaches into deployer)."""
    from deployer import documents
    from deployer.http.listing import EXTENSION

    client, times, size = app.test_client(), [], 0
    for _ in range(repeats):
        app.extensions.pop(EXTENSION, None)
        documents._memo.clear()
        began = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - began) * 1000)
        size = len(answer.data)
    return median(times), size


def run(rows: int, repeats: int) -> dict[tuple[int, str], tuple[float, int]]:
    """(history rows, path) -> (p50 ms, bytes), for an empty and a full history."""
    results = {}
    for count in (0, SMALL, rows):
        with tempfile.TemporaryDirectory() as folder:
            app = make_app(Path(folder))
            began = time.monotonic()
            fill(app, count)
            sys.stderr.write(f"reads: {count} rows written in {time.monotonic() - began:.0f} s\n")
            for path in PATHS:
                results[(count, path)] = measure(app, path, repeats)
            results[(count, FIRST_READ)] = measure_first_read(app, PATHS[2], repeats)
            app.extensions["deployer"].store.close()
    return results


def report(
    results: dict[tuple[int, str], tuple[float, int]], rows: int, repeats: int, load: str = ""
) -> str:
    """The markdown report: a table per history size, and the targets."""
    lines = ["# Benchmark: reads at scale", "", *machine()]
    lines += [f"- load average (1, 5, 15 min): {load}"] if load else []
    lines += [
        f"- command: `.venv/bin/python -m bench.reads --rows {rows} --repeats {repeats}`",
        f"- {SERVICES} services; history of 0, {SMALL} and {rows:,} finished deployments "
        "(7 steps each); "
        "p50 of each GET through Flask's test client, in this process (no network)",
        "- `/healthz` is Flask's own floor (routing, request context, test client); a repeated "
        "page of 20 costs one indexed read of 20 rows without their steps plus joining the "
        "JSON kept for them; its `first read` (nothing kept yet) loads the 20 deployments with "
        "their 140 steps, builds their documents and encodes them, once per deployment and "
        "kind of reader (with or without the token)",
        "",
    ]
    head = ["GET", "empty history", f"{SMALL} rows", f"{rows:,} rows", f"size at {rows:,}"]
    table = [
        [
            path,
            *(f"{results[(count, path)][0]:.2f} ms" for count in (0, SMALL, rows)),
            f"{results[(rows, path)][1] / 1024:.0f} KiB",
        ]
        for path in (*PATHS, FIRST_READ)
    ]
    lines += [*markdown_table(head, table), ""]
    status, page = results[(rows, "/status")][0], results[(rows, "/")][0]
    listing, empty = results[(rows, PATHS[2])][0], results[(0, PATHS[2])][0]
    history = listing / max(empty, 0.001)
    targets = [
        ["/status p50 < 10 ms", f"{status:.1f} ms", "yes" if status < 10 else "**no**"],
        ["/ p50 < 50 ms", f"{page:.1f} ms", "yes" if page < 50 else "**no**"],
        [
            "/deployments?limit=20 within 2x of its time on an empty history",
            f"{listing:.2f} ms / {empty:.2f} ms = {history:.2f}x",
            "yes" if history <= 2 else "**no**",
        ],
    ]
    return "\n".join([*lines, *markdown_table(["target", "measured", "met"], targets), ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--write", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    began = load_average()
    results = run(args.rows, args.repeats)
    load = f"{began} at start, {load_average()} at end"
    text = report(results, args.rows, args.repeats, load)
    sys.stdout.write(text)
    if args.write:
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
