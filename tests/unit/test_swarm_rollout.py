"""The Swarm strategy and its adoption at start, on a fake Swarm manager (tests/fake_swarm.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from deployer import create_app
from deployer.config import Config
from deployer.console import status_table
from deployer.errors import ServiceError
from deployer.models import Deployment, DeploymentState, StepState
from deployer.runtime import Runtime
from tests.conftest import ENVIRON, make_config
from tests.fake_swarm import FakeSwarm
from tests.fakes import FakeBackend, FakeNginxCommands
from tests.helpers import (
    Killed,
    finished,
    kill_when_step_starts,
    new_deployment,
    wait_for_step,
)

IMAGE = "registry.example.com/acme/shop"
V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64
V3 = "sha256:" + "3" * 64


def swarm_config(tmp_path: Path, nodes: list[str] | None = None, **shop: Any) -> Config:
    """Service `shop` on Swarm; a key given as None is left out; `nodes` at the top level."""
    service = {
        "engine": "swarm",
        "image": IMAGE,
        "ports": "19000-19002",
        "update": {"monitor": 0.01, "timeout": 5},
        **shop,
    }
    service = {key: value for key, value in service.items() if value is not None}
    top: dict[str, Any] = {"nodes": nodes} if nodes else {}
    return make_config(tmp_path, services={"shop": service}, **top)


@pytest.fixture
def swarm() -> FakeSwarm:
    fake = FakeSwarm()
    fake.digests = {f"{IMAGE}:latest": V1}
    return fake


APPS: dict[int, Flask] = {}  # id(runtime) -> its app


@pytest.fixture
def start(swarm: FakeSwarm, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """start(**shop) -> a started Runtime with Swarm service `shop` on the fake Swarm; call it
    again to "restart" deployer on the same state."""
    started: list[Runtime] = []

    def make(**shop: Any) -> Runtime:
        config = swarm_config(tmp_path, **shop)
        app = create_app(
            config,
            backend=FakeBackend(),
            environ=ENVIRON,
            run=FakeNginxCommands(config.nginx.output),
            swarm=swarm,
        )
        runtime: Runtime = app.extensions["deployer"]
        runtime.swarm.poll = 0.0
        runtime.swarm.settle = 0.0
        runtime.start()
        started.append(runtime)
        APPS[id(runtime)] = app
        return runtime

    yield make
    for runtime in started:
        runtime.stop(1)
        runtime.store.close()
        APPS.pop(id(runtime), None)


def v1_served_v2_pushed(start: Callable[..., Runtime], swarm: FakeSwarm, **shop: Any) -> Runtime:
    """A started runtime whose service runs V1 (deployed), with V2 now behind the tag."""
    runtime = start(**shop)
    run(runtime)
    swarm.digests[f"{IMAGE}:latest"] = V2
    return runtime


def run(runtime: Runtime, tag: str = "latest") -> Deployment:
    deployment = new_deployment(runtime, "shop", tag)
    runtime.deployer.run(deployment)
    found = runtime.store.get(deployment.id)
    assert found is not None
    return found


def upstream(runtime: Runtime) -> str:
    return runtime.config.nginx.output.read_text()


def steps(deployment: Deployment) -> list[tuple[str, str]]:
    return [(step.name, step.state.value) for step in deployment.steps]


def test_the_first_push_creates_the_service_and_nginx_lists_its_task(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = start()

    first = run(runtime)

    assert first.state is DeploymentState.SUCCEEDED, first.error
    assert steps(first) == [(s, "succeeded") for s in ("resolve", "update", "converge", "nginx")]
    assert first.steps[1].detail.startswith(f"created Swarm service shop: {IMAGE}@{V1} on port")
    assert swarm.calls == [f"resolve {IMAGE}:latest", f"apply shop {V1} port 19000"]
    assert "server 127.0.0.1:19000;" in upstream(runtime)
    assert (first.digest, first.previous_digest) == (V1, None)


def test_an_update_rotates_the_port_and_nginx_lists_both_until_swarm_switched(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    during: list[str] = []
    swarm.on_apply.append(lambda: during.append(upstream(runtime)))

    second = run(runtime)

    assert second.state is DeploymentState.SUCCEEDED, second.error
    assert swarm.calls[-1] == f"apply shop {V2} port 19001"
    assert "server 127.0.0.1:19000 max_fails=0;" in during[0]
    assert "server 127.0.0.1:19001 max_fails=0;" in during[0]
    assert "19000" not in upstream(runtime)
    assert "server 127.0.0.1:19001;" in upstream(runtime)
    assert runtime.fleet.serving("shop").digest == V2  # type: ignore[union-attr]


def test_the_same_digest_on_every_replica_is_skipped_without_a_write(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = start()
    run(runtime)
    writes = len(swarm.services["shop"].specs)

    again = run(runtime)

    assert again.state is DeploymentState.SKIPPED
    assert "runs it on every replica" in again.steps[0].detail
    assert len(swarm.services["shop"].specs) == writes


def test_the_same_digest_with_a_replica_down_is_forced_to_new_tasks(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = start()
    run(runtime)
    swarm._stop_tasks(swarm.services["shop"])  # the task died; Swarm has not replaced it yet

    again = run(runtime)

    assert again.state is DeploymentState.SUCCEEDED, again.error
    assert "only 0 of 1 replicas run it: updating it again" in again.steps[0].detail
    specs = swarm.services["shop"].specs
    assert (specs[-1].digest, specs[-1].force_update) == (V1, specs[-2].force_update + 1)


def test_swarm_rolling_back_fails_the_deployment_with_task_errors_and_nginx_goes_back(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    swarm.outcome = "rollback"

    failed = run(runtime)

    assert failed.state is DeploymentState.FAILED
    assert steps(failed)[-1] == ("converge", "failed")
    assert failed.error is not None
    assert "Swarm rolled the update back" in failed.error
    assert "task: non-zero exit (1)" in failed.error
    assert "hunter2" not in failed.error  # task output is in `logs`, for authenticated readers
    assert failed.logs is not None
    assert "log of task" in failed.logs
    assert not any(call.startswith("rollback") for call in swarm.calls)  # Swarm did it
    assert "server 127.0.0.1:19000;" in upstream(runtime)
    assert "19001" not in upstream(runtime)


def test_a_deadline_swarm_does_not_act_on_is_rolled_back_by_deployer(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm, update={"monitor": 0.01, "timeout": 0.2})
    swarm.outcome = "hang"

    failed = run(runtime)

    assert failed.state is DeploymentState.FAILED
    assert failed.error is not None
    assert "did not converge before the deadline" in failed.error
    assert "deployer asked Swarm to roll shop back to sha256:111111111111" in failed.error
    assert swarm.calls[-1] == "rollback shop"
    assert swarm.services["shop"].state.digest == V1
    # Swarm's rollback has just begun: the old port and every live task stay listed, none
    # marked down, until Swarm settles (then nginx follows the pinned digest's tasks).
    assert "server 127.0.0.1:19000 max_fails=0;" in upstream(runtime)


def test_a_failed_first_deployment_removes_the_service_it_created(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = start(update={"monitor": 0.01, "timeout": 0.2})
    swarm.outcome = "hang"

    failed = run(runtime)

    assert failed.state is DeploymentState.FAILED
    assert "removed Swarm service shop, which this first deployment created" in str(failed.error)
    assert "shop" not in swarm.services
    assert "server 127.0.0.1:9 down;" in upstream(runtime)


def test_an_engine_error_after_the_write_landed_leaves_no_task_of_the_failed_digest(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    swarm.outcome = "lost"

    failed = run(runtime)

    assert failed.state is DeploymentState.FAILED
    assert steps(failed)[-1] == ("update", "failed")
    assert "connection reset by peer" in str(failed.error)
    assert "deployer asked Swarm to roll shop back" in str(failed.error)
    assert swarm.services["shop"].state.digest == V1
    # The V2 task still answers until Swarm's rollback replaces it: both stay listed.
    assert "server 127.0.0.1:19000 max_fails=0;" in upstream(runtime)
    assert "server 127.0.0.1:19001 max_fails=0;" in upstream(runtime)


def test_an_engine_error_before_the_write_changes_nothing_and_nginx_goes_back(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)

    def refuse() -> None:
        raise swarm_error()

    swarm.on_apply.append(refuse)

    failed = run(runtime)

    assert failed.state is DeploymentState.FAILED
    assert "Swarm service shop not changed" not in str(failed.error)  # the write was tried
    assert swarm.services["shop"].state.digest == V1
    assert "server 127.0.0.1:19000;" in upstream(runtime)
    assert "19001" not in upstream(runtime)


def swarm_error() -> Exception:
    return ServiceError("shop", "cannot update Swarm service shop: no such image")


def test_killed_mid_converge_the_restart_reattaches_and_records_success(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    deployment = new_deployment(runtime, "shop")
    kill_when_step_starts(runtime, deployment, "converge")
    assert swarm.services["shop"].state.digest == V2  # the write landed before the kill

    restarted = start()
    found = wait_finished(restarted, deployment.id)

    assert found.state is DeploymentState.SUCCEEDED, found.error
    assert [name for name, _ in steps(found)] == [
        "resolve",
        "update",
        "converge",
        "converge",
        "nginx",
    ]
    assert found.steps[2].state is StepState.INTERRUPTED
    assert found.steps[3].detail.startswith("re-attached after deployer restarted: ")
    assert "server 127.0.0.1:19001;" in upstream(restarted)


def test_killed_mid_converge_while_swarm_rolls_back_the_restart_records_the_failure(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    swarm.outcome = "rollback"
    deployment = new_deployment(runtime, "shop")
    kill_when_step_starts(runtime, deployment, "converge")

    restarted = start()
    found = wait_finished(restarted, deployment.id)

    assert found.state is DeploymentState.FAILED
    assert "Swarm rolled the update back" in str(found.error)
    assert "server 127.0.0.1:19000;" in upstream(restarted)


def test_killed_before_the_write_the_restart_fails_it_and_changes_nothing(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    deployment = new_deployment(runtime, "shop")
    kill_when_step_starts(runtime, deployment, "update")
    writes = len(swarm.services["shop"].specs)

    restarted = start()
    found = restarted.store.get(deployment.id)

    assert found is not None
    assert found.state is DeploymentState.FAILED
    assert str(found.error).startswith("interrupted at update: deployer stopped before its update")
    assert f"serves {V1}" in str(found.error)
    assert len(swarm.services["shop"].specs) == writes
    assert "server 127.0.0.1:19000;" in upstream(restarted)


def test_a_stop_during_converge_leaves_the_deployment_running_for_the_next_start(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm, update={"monitor": 0.01, "timeout": 60})
    swarm.outcome = "hang"
    deployment = runtime.deploy_now("shop", None, "test")
    wait_step(runtime, deployment.id, "converge")

    assert runtime.stop(5)

    found = runtime.store.get(deployment.id)
    assert found is not None
    assert found.state is DeploymentState.RUNNING
    assert steps(found)[-1] == ("converge", "interrupted")
    assert "the next start re-attaches" in found.steps[-1].detail
    assert not any(call.startswith("rollback") for call in swarm.calls)


def test_status_page_cli_and_metrics_show_replicas_and_tasks(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = start(replicas=2, ports="19000-19029")
    run(runtime)
    runtime.view.read("shop")
    client = runtime_client(runtime)

    entry = client.get("/status").json["services"]["shop"]  # type: ignore[index]
    page = client.get("/", headers={"Accept": "text/html"}).text
    metrics = client.get("/metrics").text

    assert entry["engine"] == "swarm"
    assert entry["replicas"] == {"desired": 2, "running": 2}
    assert [(t["slot"], t["state"], t["port"]) for t in entry["tasks"]] == [
        (1, "running", 19001),
        (2, "running", 19002),
    ]
    assert entry["addresses"] == ["127.0.0.1:19001", "127.0.0.1:19002"]
    assert "2/2 running" in page
    assert 'deployer_service_replicas{service="shop"} 2.0' in metrics
    assert 'deployer_swarm_replicas_desired{service="shop"} 2.0' in metrics
    assert "swarm 2/2" in status_table({"services": {"shop": entry}})


def test_a_rollback_redeploys_the_previous_digest_through_swarm(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    run(runtime)
    runtime.view.read("shop")

    queued = runtime.rollback("shop", None, "test")
    found = wait_finished(runtime, queued.id)

    assert found.state is DeploymentState.SUCCEEDED, found.error
    assert (found.requested_digest, swarm.services["shop"].state.digest) == (V1, V1)


def runtime_client(runtime: Runtime) -> FlaskClient:
    return APPS[id(runtime)].test_client()


def wait_step(runtime: Runtime, deployment_id: str, step: str) -> None:
    wait_for_step(runtime, deployment_id, step, timeout=5)


def wait_finished(runtime: Runtime, deployment_id: str) -> Deployment:
    return finished(runtime, deployment_id, timeout=10)


def test_a_stop_after_converge_succeeded_never_rolls_the_release_back(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    original = runtime.view.read

    def stop_now(name: str) -> None:
        # The view is read once converge has decided: SIGTERM arrives right then.
        if swarm.services["shop"].state.digest == V2:
            runtime.stopping.set()
        original(name)

    runtime.view.read = stop_now  # type: ignore[method-assign]

    found = run(runtime)

    assert found.state is DeploymentState.SUCCEEDED, found.error
    assert steps(found)[-1] == ("nginx", "succeeded")
    assert not any(call.startswith("rollback") for call in swarm.calls)
    assert "server 127.0.0.1:19001;" in upstream(runtime)


def test_killed_right_after_the_write_landed_the_restart_reattaches_it(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    original, save = swarm.apply, runtime.store.save
    dead: list[bool] = []

    def apply_then_die(spec: Any) -> Any:
        original(spec)
        dead.append(True)
        raise Killed  # the write reached Swarm; the update step was never recorded done

    swarm.apply = apply_then_die  # type: ignore[method-assign]
    runtime.store.save = lambda item: None if dead else save(item)  # type: ignore[method-assign, assignment]
    deployment = new_deployment(runtime, "shop")
    with pytest.raises(Killed):
        runtime.deployer.run(deployment)
    swarm.apply, runtime.store.save = original, save  # type: ignore[method-assign]

    restarted = start()
    found = wait_finished(restarted, deployment.id)

    assert found.state is DeploymentState.SUCCEEDED, found.error
    assert ("update", "interrupted") in steps(found)
    assert steps(found)[-1] == ("nginx", "succeeded")
    assert "server 127.0.0.1:19001;" in upstream(restarted)
    assert "19000" not in upstream(restarted)


def test_killed_in_the_nginx_step_the_restart_switches_without_judging_again(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = v1_served_v2_pushed(start, swarm)
    deployment = new_deployment(runtime, "shop")
    kill_when_step_starts(runtime, deployment, "nginx")

    restarted = start()
    found = wait_finished(restarted, deployment.id)

    assert found.state is DeploymentState.SUCCEEDED, found.error
    assert [name for name, _ in steps(found)] == [
        "resolve",
        "update",
        "converge",
        "nginx",
        "nginx",
    ]
    assert found.steps[3].state is StepState.INTERRUPTED
    assert "server 127.0.0.1:19001;" in upstream(restarted)
    assert "19000" not in upstream(restarted)


def move_task(swarm: FakeSwarm, node: str) -> None:
    """Swarm rescheduled the service's running task on another node (its node was lost)."""
    found = swarm.services["shop"]
    found.tasks = [
        replace(task, node_address=node, node="node2", node_id="node2")
        if task.desired_state == "running"
        else task
        for task in found.tasks
    ]


def test_nginx_follows_a_task_swarm_moved_to_another_node_between_deployments(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = start()
    run(runtime)
    move_task(swarm, "10.0.0.8")

    runtime.view.follow_once()

    assert "server 10.0.0.8:19000;" in upstream(runtime)
    assert "127.0.0.1:19000" not in upstream(runtime)
    assert runtime.fleet.serving("shop").members[0].address == "10.0.0.8:19000"  # type: ignore[union-attr]
    written = runtime.config.nginx.output.stat().st_mtime_ns
    runtime.view.follow_once()  # nothing moved since: nginx is left alone
    assert runtime.config.nginx.output.stat().st_mtime_ns == written


def test_nginx_does_not_follow_tasks_while_a_deployment_of_the_service_is_queued(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = start()
    run(runtime)
    runtime.queue.stop(1)  # nothing runs the queued deployment: it stays queued
    runtime.queue.stopping.clear()
    runtime.queue.submit("shop", IMAGE, "latest", "push")
    move_task(swarm, "10.0.0.8")

    runtime.view.follow_once()

    assert "server 127.0.0.1:19000;" in upstream(runtime)  # the deployment's steps decide


def test_nginx_keeps_its_servers_when_swarm_runs_no_task_at_all(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = start()
    run(runtime)
    found = swarm.services["shop"]
    found.tasks = [replace(task, desired_state="shutdown", state="failed") for task in found.tasks]

    runtime.view.follow_once()

    assert "server 127.0.0.1:19000;" in upstream(runtime)


def test_a_stale_read_is_flagged_in_the_cli_and_its_age_grows_in_the_metrics(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    runtime = start()
    run(runtime)
    runtime.view.read("shop")
    client = runtime_client(runtime)
    fresh = client.get("/status").json["services"]["shop"]  # type: ignore[index]
    swarm.reachable = False
    runtime.view.read("shop")  # the background read fails: the last one is kept
    time.sleep(0.3)

    stale = client.get("/status").json["services"]["shop"]  # type: ignore[index]
    metrics = client.get("/metrics").text

    assert "stale" not in status_table({"services": {"shop": fresh}})
    assert stale["read_error"] == "cannot reach the Docker engine"
    assert f"swarm 1/1, stale since {stale['read_at']}" in status_table(
        {"services": {"shop": stale}}
    )
    [age] = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('deployer_swarm_read_age_seconds{service="shop"}')
    ]
    assert 0.3 <= age < 5  # since the last read that succeeded, not the failed one


def test_ingress_lists_the_configured_nodes_and_following_swarm_keeps_them(
    start: Callable[..., Runtime], swarm: FakeSwarm
) -> None:
    """`nodes:` (required for ingress) are where nginx reaches the routing mesh; the engine's
    own node list (advertise addresses, or none while nodes read `unknown`) is not."""
    runtime = start(
        nodes=["10.0.0.5", "10.0.0.6"],
        ports=None,
        publish={"mode": "ingress", "port": 30080},
        network="shop-net",
    )

    assert run(runtime).state is DeploymentState.SUCCEEDED
    listed = upstream(runtime)
    swarm.node_addresses = lambda: []  # type: ignore[method-assign]
    runtime.view.follow_once()

    assert "server 10.0.0.5:30080;" in listed
    assert "server 10.0.0.6:30080;" in listed
    assert upstream(runtime) == listed
