"""Pure Engine API documents for Swarm services, and parsing what the engine answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from deployer.backends.swarm_api import (
    digest_of,
    make_service_document,
    node_address,
    parse_engine_time,
    parse_service,
    parse_task,
)
from deployer.backends.swarm_types import (
    FileReference,
    HealthCheck,
    Resources,
    ServiceSpec,
    UpdatePolicy,
    UpdateState,
)
from tests.swarm_recordings import load

DIGEST = "sha256:" + "ab" * 32
IMAGE = "registry.example.com/acme/web"


def make_spec(**overrides: Any) -> ServiceSpec:
    values: dict[str, Any] = {
        "name": "web",
        "image": IMAGE,
        "digest": DIGEST,
        "instance": "prod",
        "port": 18001,
    }
    return ServiceSpec(**{**values, **overrides})


def test_a_full_spec_becomes_the_whole_service_document() -> None:
    spec = make_spec(
        deployment="d1",
        replicas=3,
        env={"LOG_LEVEL": "info"},
        command=("/app/server",),
        args=("--verbose",),
        constraints=("node.role==worker", "node.labels.zone==a"),
        resources=Resources(
            cpus_limit=1.5,
            memory_limit=256 * 2**20,
            cpus_reservation=0.25,
            memory_reservation=2**26,
        ),
        secrets=(FileReference("db-password"),),
        configs=(FileReference("app-conf", target="/etc/app.conf", mode=0o440),),
        update=UpdatePolicy(parallelism=2, delay=1.5, monitor=30.0, max_failure_ratio=0.25),
        healthcheck=HealthCheck(("CMD", "wget", "-q", "-O-", "http://127.0.0.1:18001/healthz")),
        labels={"team": "shop", "deployer.instance": "spoofed"},
        stop_grace_period=20.0,
    )

    document = make_service_document(spec, {"db-password": "sec1"}, {"app-conf": "cfg1"})

    update_config = {
        "Parallelism": 2,
        "Delay": 1_500_000_000,
        "FailureAction": "rollback",
        "Monitor": 30_000_000_000,
        "MaxFailureRatio": 0.25,
        "Order": "start-first",
    }
    assert document == {
        "name": "web",
        "labels": {
            "team": "shop",
            "deployer.instance": "prod",
            "deployer.service": "web",
            "deployer.digest": DIGEST,
            "deployer.deployment": "d1",
        },
        "task_template": {
            "ContainerSpec": {
                "Image": f"{IMAGE}@{DIGEST}",
                "Env": ["LOG_LEVEL=info", "PORT=18001"],
                "Labels": {"deployer.service": "web", "deployer.digest": DIGEST},
                "StopGracePeriod": 20_000_000_000,
                "Command": ["/app/server"],
                "Args": ["--verbose"],
                "Secrets": [
                    {
                        "SecretID": "sec1",
                        "SecretName": "db-password",
                        "File": {"Name": "db-password", "UID": "0", "GID": "0", "Mode": 0o444},
                    }
                ],
                "Configs": [
                    {
                        "ConfigID": "cfg1",
                        "ConfigName": "app-conf",
                        "File": {"Name": "/etc/app.conf", "UID": "0", "GID": "0", "Mode": 0o440},
                    }
                ],
                "Healthcheck": {
                    "Test": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:18001/healthz"],
                    "Interval": 5_000_000_000,
                    "Timeout": 3_000_000_000,
                    "Retries": 3,
                    "StartPeriod": 0,
                },
            },
            "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000, "MaxAttempts": 0},
            "Networks": [{"Target": "host"}],
            "ForceUpdate": 0,
            "Resources": {
                "Limits": {"NanoCPUs": 1_500_000_000, "MemoryBytes": 256 * 2**20},
                "Reservations": {"NanoCPUs": 250_000_000, "MemoryBytes": 2**26},
            },
            "Placement": {"Constraints": ["node.role==worker", "node.labels.zone==a"]},
        },
        "mode": {"Replicated": {"Replicas": 3}},
        "update_config": update_config,
        "rollback_config": {**update_config, "FailureAction": "pause"},
        "endpoint_spec": None,  # host networking publishes nothing
    }


def test_a_minimal_spec_states_update_and_rollback_config_and_nothing_optional() -> None:
    document = make_service_document(make_spec(), {}, {})

    template = document["task_template"]
    assert set(template) == {"ContainerSpec", "RestartPolicy", "Networks", "ForceUpdate"}
    assert set(template["ContainerSpec"]) == {"Image", "Env", "Labels", "StopGracePeriod"}
    assert document["update_config"] == {
        "Parallelism": 1,
        "Delay": 0,
        "FailureAction": "rollback",
        "Monitor": 5_000_000_000,
        "MaxFailureRatio": 0.0,
        "Order": "start-first",
    }
    assert document["rollback_config"]["FailureAction"] == "pause"
    assert "deployer.deployment" not in document["labels"]


def test_a_named_network_gets_no_port_variable() -> None:
    document = make_service_document(make_spec(network="backend", port=None), {}, {})

    assert document["task_template"]["Networks"] == [{"Target": "backend"}]
    assert document["task_template"]["ContainerSpec"]["Env"] == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"digest": "latest"}, "expected a digest sha256:<64 hex>"),
        ({"digest": "sha256:abc"}, "expected a digest"),
        ({"image": f"{IMAGE}@{DIGEST}"}, "must not carry a digest"),
        ({"replicas": -1}, "replicas must be >= 0"),
        ({"port": None}, "host networking needs a port"),
    ],
)
def test_a_spec_refuses_what_cannot_be_deployed(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_spec(**overrides)


def test_a_recorded_service_is_read_with_its_update_status_and_previous_spec() -> None:
    recording = load("update_start_first_success")
    raw = recording.raw["observations"][-1]["service"]

    state = parse_service(raw)

    assert state.id == raw["ID"]
    assert state.name == raw["Spec"]["Name"]
    assert state.version == raw["Version"]["Index"]
    assert state.digest == recording.target
    assert state.image.endswith(f"@{recording.target}")
    assert state.port is not None
    assert state.replicas == 1
    assert state.update_state is UpdateState.COMPLETED
    assert state.update_message == "update completed"
    assert state.update_started_at is not None
    assert state.update_completed_at is not None
    assert state.update_started_at < state.update_completed_at
    assert state.previous_digest == load("create_no_update_status").target
    assert state.previous_port not in (None, state.port)
    assert state.instance == raw["Spec"]["Labels"]["deployer.instance"]


def test_after_a_rollback_swarm_keeps_no_previous_spec() -> None:
    raw = load("update_exits_rolled_back").raw["observations"][-1]["service"]

    state = parse_service(raw)

    assert state.update_state is UpdateState.ROLLBACK_COMPLETED
    assert state.previous_image is None
    assert state.previous_digest is None
    assert state.previous_port is None


def test_a_recorded_task_is_read_with_node_name_digest_and_port() -> None:
    recording = load("update_start_first_success")
    seen = recording.raw["observations"][-1]
    raw = next(task for task in seen["tasks"] if task["DesiredState"] == "running")

    task = parse_task(raw, seen["nodes"])

    assert task.id == raw["ID"]
    assert task.slot == 1
    assert task.node == seen["nodes"][raw["NodeID"]]
    assert task.state == "running"
    assert task.digest == recording.target
    assert task.port == parse_service(seen["service"]).port
    assert task.exit_code is None  # a running task has no exit code yet
    assert task.container_id == raw["Status"]["ContainerStatus"]["ContainerID"]
    assert task.created_at is not None
    assert task.state_since is not None
    assert not task.failed
    assert task.alive


def test_a_failed_task_keeps_the_engines_error_and_exit_code() -> None:
    seen = load("update_exits_rolled_back").raw["observations"][-1]
    raw = next(task for task in seen["tasks"] if task["Status"]["State"] == "failed")

    task = parse_task(raw, {})

    assert task.error == "task: non-zero exit (3)"
    assert task.exit_code == 3
    assert task.node == raw["NodeID"]  # hostname unknown: the node id
    assert task.failed
    assert task.what_went_wrong == "task: non-zero exit (3)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T10:57:33.417779481Z", datetime(2026, 11, 24, 10, 57, 33, 417779, UTC)),
        ("2026-11-24T10:57:33Z", datetime(2026, 11, 24, 10, 57, 33, tzinfo=UTC)),
        ("2026-11-24T12:57:33.5+02:00", datetime(2026, 11, 24, 10, 57, 33, 500000, UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_engine_times_parse_to_aware_utc(value: str | None, expected: datetime | None) -> None:
    assert parse_engine_time(value) == expected


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (f"{IMAGE}@{DIGEST}", DIGEST),
        (f"{IMAGE}:v1@{DIGEST}", DIGEST),
        (f"{IMAGE}:v1", None),
        ("", None),
    ],
)
def test_the_digest_an_image_reference_pins(image: str, expected: str | None) -> None:
    assert digest_of(image) == expected


@pytest.mark.parametrize(
    ("node", "address"),
    [
        ({"Status": {"Addr": "10.0.0.7"}}, "10.0.0.7"),  # a worker
        (  # a leader that did not create the swarm: Status.Addr 0.0.0.0 (moby/moby#35437)
            {"Status": {"Addr": "0.0.0.0"}, "ManagerStatus": {"Addr": "10.0.0.5:2377"}},
            "10.0.0.5",
        ),
        (
            {"Status": {"Addr": "10.0.0.9"}, "ManagerStatus": {"Addr": "[fd00::5]:2377"}},
            "[fd00::5]",
        ),
        ({"Status": {"Addr": "fd00::6"}}, "[fd00::6]"),  # ready for host:port
        ({"Status": {"Addr": "0.0.0.0"}}, ""),  # nowhere known: left out of nginx
        ({}, ""),
    ],
)
def test_a_nodes_address_is_a_managers_advertised_one_else_its_status_address(
    node: dict[str, Any], address: str
) -> None:
    assert node_address(node) == address
