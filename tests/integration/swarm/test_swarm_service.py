"""The Swarm adapter and the converge judge on a real single-node swarm, host networking."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import docker
import pytest

from deployer.backends.swarm import SwarmBackend
from deployer.backends.swarm_types import (
    FileReference,
    Resources,
    ServiceSpec,
    UpdateState,
)
from deployer.rollout.converge import Outcome
from deployer.rollout.port_rotation import next_port, ports_in_use
from deployer.rollout.swarm_status import make_status
from deployer.rollout.swarm_watch import Convergence
from deployer.sandbox.net import accepts_connections, http_get
from tests.integration.swarm.conftest import SwarmImages, converge, wait_until

pytestmark = pytest.mark.integration

MakeSpec = Callable[..., ServiceSpec]
Deploy = Callable[..., Convergence]


def version_on(port: int) -> str | None:
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/version", timeout=1.0)
    except OSError:
        return None
    return body.strip() if status == 200 else None


def rotate(backend: SwarmBackend, name: str, ports: list[int]) -> int:
    """The next port of the pool for name's next release (the integrator's step)."""
    state = backend.service(name)
    assert state is not None
    port = next_port(ports, state.port, ports_in_use(backend.tasks(state.id)))
    assert port is not None
    return port


def docker_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, check=False, timeout=60
    )


def test_a_service_is_created_pinned_to_a_digest_and_converges(
    backend: SwarmBackend,
    swarm_images: SwarmImages,
    swarm_instance: str,
    make_spec: MakeSpec,
    deploy: Deploy,
    ports: list[int],
) -> None:
    label = f"deployer.instance={swarm_instance}"
    secret, config = f"{swarm_instance}-token", f"{swarm_instance}-conf"
    assert (
        docker_cli("secret", "create", "--label", label, secret, "-", stdin="s3cret").returncode
        == 0
    )
    assert (
        docker_cli("config", "create", "--label", label, config, "-", stdin="a=1").returncode == 0
    )
    spec = make_spec(
        swarm_images.v1,
        ports[0],
        env={"GREETING": "hello"},
        constraints=("node.role==manager",),
        resources=Resources(cpus_limit=0.5, memory_limit=64 * 2**20, memory_reservation=8 * 2**20),
        secrets=(FileReference(secret, target="token"),),
        configs=(FileReference(config, target="/etc/app.conf"),),
        labels={"team": "shop"},
    )

    digest = backend.resolve(swarm_images.v1.repository, swarm_images.v1.tag)
    result = deploy(spec)

    assert digest == spec.digest
    assert result.succeeded, result.describe()
    assert result.verdict.update_state is None  # a create: the tasks alone decided
    state = backend.service(spec.name)
    assert state is not None
    assert state.digest == swarm_images.v1.digest
    assert state.labels == {
        "team": "shop",
        "deployer.service": spec.name,
        "deployer.instance": swarm_instance,
        "deployer.digest": spec.digest,
    }
    [task] = [task for task in backend.tasks(state.id) if task.desired_state == "running"]
    assert (task.state, task.digest, task.port, task.slot) == ("running", spec.digest, ports[0], 1)
    assert task.node  # the node's hostname
    assert version_on(ports[0]) == "v1"
    status = make_status(state, backend.tasks(state.id))
    assert (status.replicas_desired, status.replicas_running) == (1, 1)
    in_container = docker_cli(
        "exec",
        task.container_id,
        "/bin/busybox",
        "sh",
        "-c",
        "cat /run/secrets/token; echo; cat /etc/app.conf; echo; echo $GREETING",
    )
    assert in_container.stdout.split() == ["s3cret", "a=1", "hello"]
    assert [found.name for found in backend.list_managed(swarm_instance)] == [spec.name]
    backend.remove(spec.name)
    assert backend.service(spec.name) is None
    assert backend.list_managed(swarm_instance) == []


def test_update_start_first_with_port_rotation_succeeds_without_a_gap(
    backend: SwarmBackend,
    swarm_images: SwarmImages,
    make_spec: MakeSpec,
    deploy: Deploy,
    ports: list[int],
) -> None:
    first = make_spec(swarm_images.v1, ports[0])
    assert deploy(first).succeeded
    second = make_spec(swarm_images.v2, rotate(backend, first.name, ports))

    with answers_on(ports[0], second.port or 0) as gaps:
        result = deploy(second)

    assert result.succeeded, result.describe()
    assert result.verdict.update_state is UpdateState.COMPLETED
    assert second.port == ports[1]
    assert gaps == []  # at every moment the old or the new port answered (nginx lists both)
    assert version_on(ports[1]) == "v2"
    state = backend.service(first.name)
    assert state is not None
    assert (state.digest, state.previous_digest) == (swarm_images.v2.digest, first.digest)
    assert (state.port, state.previous_port) == (ports[1], ports[0])
    running = [task for task in backend.tasks(state.id) if task.desired_state == "running"]
    assert [(task.digest, task.state) for task in running] == [(second.digest, "running")]
    wait_until(lambda: not accepts_connections(ports[0]), 10, "the old task stops")


def test_a_release_that_exits_at_once_is_rolled_back_and_reported_failed(
    backend: SwarmBackend,
    swarm_images: SwarmImages,
    make_spec: MakeSpec,
    deploy: Deploy,
    ports: list[int],
) -> None:
    first = make_spec(swarm_images.v1, ports[0])
    assert deploy(first).succeeded
    bad = make_spec(swarm_images.exits, rotate(backend, first.name, ports))

    result = deploy(bad)

    assert not result.succeeded
    assert result.verdict.outcome is Outcome.FAILED
    assert result.verdict.update_state is UpdateState.ROLLBACK_COMPLETED, result.describe()
    described = result.describe()
    assert described.startswith("Swarm rolled the update back")
    assert "task: non-zero exit (3)" in described
    assert "fatal: cannot read /etc/app.conf" in described  # the task's last log line
    state = backend.service(first.name)
    assert state is not None
    assert state.digest == first.digest
    assert version_on(ports[0]) == "v1"  # the old release never stopped serving


def test_the_cli_says_converged_after_swarm_rolled_back_and_the_judge_says_failed(
    backend: SwarmBackend,
    swarm_images: SwarmImages,
    make_spec: MakeSpec,
    deploy: Deploy,
    ports: list[int],
) -> None:
    first = make_spec(swarm_images.v1, ports[0])
    assert deploy(first).succeeded
    since = datetime.now(UTC)

    # The same port for the new release: start-first cannot bind it beside the old task.
    pinned = f"{swarm_images.v2.repository}@{swarm_images.v2.digest}"
    cli = docker_cli("service", "update", "--detach=false", "--image", pinned, first.name)
    result = converge(backend, make_spec(swarm_images.v2, ports[0]), since)

    assert cli.returncode == 0, cli.stderr
    assert "converged" in cli.stdout.splitlines()[-1]
    assert not result.succeeded
    assert result.verdict.update_state is UpdateState.ROLLBACK_COMPLETED
    assert result.verdict.reason.startswith("Swarm rolled the update back")
    assert version_on(ports[0]) == "v1"


def test_a_release_that_never_becomes_healthy_fails_with_its_healthcheck(
    backend: SwarmBackend,
    swarm_images: SwarmImages,
    make_spec: MakeSpec,
    deploy: Deploy,
    ports: list[int],
) -> None:
    first = make_spec(swarm_images.v1, ports[0])
    assert deploy(first).succeeded
    silent = make_spec(swarm_images.silent, rotate(backend, first.name, ports))

    result = deploy(silent)

    assert result.verdict.outcome is Outcome.FAILED, result.describe()
    assert result.verdict.update_state in (
        UpdateState.ROLLBACK_STARTED,
        UpdateState.ROLLBACK_COMPLETED,
    )
    described = result.describe()
    assert "waiting forever" in described  # the task's output
    assert "HEALTHCHECK unhealthy" in described
    assert version_on(ports[0]) == "v1"


def test_an_update_out_of_sequence_is_read_again_and_written_once_more(
    swarm_images: SwarmImages, make_spec: MakeSpec, deploy: Deploy, ports: list[int]
) -> None:
    first = make_spec(swarm_images.v1, ports[0])
    assert deploy(first).succeeded
    client = docker.from_env()
    backend = SwarmBackend(lambda: client)
    interfere_once(client, first.name)
    second = make_spec(swarm_images.v2, ports[1])

    result = backend.update(second)

    assert result.retried
    state = backend.service(first.name)
    assert state is not None
    assert state.digest == second.digest
    assert "interloper" not in state.labels  # our write states the whole spec


def test_two_replicas_start_first_keep_both_old_tasks_until_new_ones_run(
    backend: SwarmBackend,
    swarm_images: SwarmImages,
    make_spec: MakeSpec,
    deploy: Deploy,
    ports: list[int],
) -> None:
    # Silent apps (no listener, no health check): two replicas can share one node.
    first = make_spec(swarm_images.silent, ports[0], replicas=2, healthcheck=None)
    assert deploy(first).succeeded
    second = make_spec(swarm_images.silent2, ports[1], replicas=2, healthcheck=None)
    seen: list[list[tuple[Any, ...]]] = []

    with observing(backend, first.name, seen):
        result = deploy(second)

    assert result.succeeded, result.describe()
    assert len(seen) > 5
    both_at_once = False
    for tasks in seen:
        for slot in (1, 2):
            running = {
                digest
                for task_slot, _, state, digest in tasks
                if task_slot == slot and state == "running"
            }
            assert running, f"slot {slot} had no running task: {tasks}"
            both_at_once = both_at_once or running == {first.digest, second.digest}
    assert both_at_once  # start-first: old and new ran side by side in a slot


def interfere_once(client: Any, name: str) -> None:
    """Make the next update_service meet a write by someone else just before it."""
    original = client.api.update_service

    def interfering(*args: Any, **kwargs: Any) -> Any:
        client.api.update_service = original
        cli = docker_cli("service", "update", "--detach", "--label-add", "interloper=1", name)
        assert cli.returncode == 0, cli.stderr
        return original(*args, **kwargs)

    client.api.update_service = interfering


@contextmanager
def answers_on(old: int, new: int) -> Iterator[list[float]]:
    """Probe both ports every 50 ms while the body runs; yields the times neither answered."""
    gaps: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.wait(0.05):
            if version_on(old) is None and version_on(new) is None:
                gaps.append(time.monotonic())

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield gaps
    finally:
        stop.set()
        thread.join()


@contextmanager
def observing(
    backend: SwarmBackend, name: str, seen: list[list[tuple[Any, ...]]]
) -> Iterator[None]:
    """Record (slot, desired, state, digest) of every task every 100 ms while the body runs."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.1):
            tasks = backend.tasks(name)
            seen.append([(t.slot, t.desired_state, t.state, t.digest) for t in tasks])

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
