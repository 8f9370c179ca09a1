"""Endurance on the real bed with `deployer serve` as a process: 30 deployments in a row leak
nothing, and a flood of webhooks during a deployment is acknowledged fast and runs one rollout.
Both print their figures (pytest -s, or the report's captured output)."""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from deployer.demo import dockerhub_payload, instance_containers
from deployer.sandbox import AppBehaviour, ImageFactory, SandboxNginx
from deployer.sandbox.images import PushedImage
from deployer.sandbox.net import http_get
from deployer.sandbox.registry import repository_path
from deployer.sandbox.serve import ServeProcess
from tests.conftest import ADMIN_TOKEN, TOKEN

pytestmark = pytest.mark.integration
DEPLOYMENTS = 30
VERSIONS = 6
KEEP_IMAGES = 3
FLOOD = 1000
FLOOD_SECONDS = 10.0


def process_figures(pid: int) -> tuple[float, int]:
    """(resident memory in MiB, open file descriptors) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(
        next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]
    )
    return rss_kib / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def engine_images(repository: str) -> list[str]:
    """Digests of the engine's images of repository (as deployer pulled them, by digest)."""
    listing = subprocess.run(
        ["docker", "images", "--digests", "--format", "{{.Digest}}", repository],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted({line for line in listing.stdout.split() if line.startswith("sha256:")})


def test_thirty_deployments_in_a_row_leak_no_container_image_memory_or_file(
    make_serve: Callable[..., ServeProcess],
    make_nginx: Callable[[list[str]], SandboxNginx],
    images: ImageFactory,
    instance: str,
) -> None:
    nginx = make_nginx(["web"])
    versions = [images.build("soak", f"s{number}") for number in range(VERSIONS)]
    serve = make_serve(
        versions[0].repository,
        nginx,
        environ={"DEPLOYER_ADMIN_TOKEN": ADMIN_TOKEN},
        keep_images=KEEP_IMAGES,
    ).start()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    figures: dict[int, tuple[float, int]] = {}
    began = time.monotonic()
    for number in range(1, DEPLOYMENTS + 1):
        version = versions[number % VERSIONS]
        answer = requests.post(
            f"{serve.base_url}/services/web/deploy",
            json={"tag": version.tag},
            headers=admin,
            timeout=5,
        )
        done = serve.wait_for_state(answer.json()["id"])
        assert done["state"] == "succeeded", done
        if number in (5, DEPLOYMENTS):
            figures[number] = process_figures(serve.pid)
    took = time.monotonic() - began

    (rss_warm, fds_warm), (rss_end, fds_end) = figures[5], figures[DEPLOYMENTS]
    print(
        f"\nsoak: {DEPLOYMENTS} deployments in {took:.1f} s ({took / DEPLOYMENTS:.2f} s each); "
        f"deployer RSS {rss_warm:.1f} MiB after 5, {rss_end:.1f} MiB after {DEPLOYMENTS}; "
        f"open files {fds_warm} after 5, {fds_end} after {DEPLOYMENTS}"
    )
    last = versions[DEPLOYMENTS % VERSIONS]
    assert http_get(nginx.url("web", "/version")) == (200, f"{last.tag}\n")
    assert len(instance_containers(instance)) == 1
    kept = engine_images(last.repository)
    assert len(kept) <= KEEP_IMAGES, kept
    assert last.digest in kept
    assert fds_end <= fds_warm + 3  # no descriptor leaks per deployment
    # Measured: +2 MiB over 85 deployments, flattening. Growth per deployment would show here.
    assert rss_end - rss_warm < 20


def flood(
    base_url: str, payload: dict[str, object], count: int, seconds: float
) -> list[tuple[int, float, str]]:
    """POST `count` webhooks spread over `seconds` from 4 threads: (status, ack seconds, id)."""
    results: list[tuple[int, float, str]] = []
    lock = threading.Lock()
    url = f"{base_url}/webhooks/dockerhub/{TOKEN}"

    def send(share: int, offset: float) -> None:
        session = requests.Session()
        start = time.monotonic() + offset
        for index in range(share):
            pause = start + index * seconds / share - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent = time.perf_counter()
            answer = session.post(url, json=payload, timeout=10)
            took = time.perf_counter() - sent
            ids = [item["id"] for item in answer.json().get("deployments", [])]
            with lock:
                results.append((answer.status_code, took, ids[0] if ids else ""))

    threads = [
        threading.Thread(target=send, args=(count // 4, number * seconds / count))
        for number in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_thousand_webhooks_during_a_deployment_are_acknowledged_and_run_one_rollout(
    make_serve: Callable[..., ServeProcess],
    make_nginx: Callable[[list[str]], SandboxNginx],
    images: ImageFactory,
) -> None:
    nginx = make_nginx(["web"])
    v1 = images.build("flood", "f1", tag="latest")
    serve = make_serve(v1.repository, nginx).start()
    assert serve.wait_for_state(serve.push(v1.repository))["state"] == "succeeded"
    v2: PushedImage = images.build("flood", "f2", AppBehaviour.SLOW, delay=3, tag="latest")
    running = serve.push(v2.repository)  # healthy after ~3 s: the flood comes meanwhile
    payload = dockerhub_payload(repository_path(v2.repository), "latest")

    results = flood(serve.base_url, payload, FLOOD, FLOOD_SECONDS)

    acks = sorted(took for _, took, _ in results)
    p50, p99 = statistics.median(acks), acks[int(len(acks) * 0.99) - 1]
    ids = {deployment for _, _, deployment in results} | {running}
    records = {deployment: serve.wait_for_state(deployment) for deployment in ids}
    print(
        f"\nflood: {len(results)} webhooks in {FLOOD_SECONDS:g} s during a deployment: ack p50 "
        f"{p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {acks[-1] * 1000:.1f} ms; "
        f"{len(ids)} deployment(s): {dict(Counter(r['state'] for r in records.values()))}"
    )
    assert [status for status, _, _ in results] == [202] * FLOOD
    assert all(deployment for _, _, deployment in results)  # every answer named its deployment
    rolled_out = [r for r in records.values() if r["state"] == "succeeded"]
    assert [r["digest"] for r in rolled_out] == [v2.digest]  # one rollout per distinct digest
    assert all(r["state"] in ("succeeded", "skipped") for r in records.values())
    assert http_get(nginx.url("web", "/version")) == (200, "f2\n")
