"""The Swarm adapter against a stubbed Engine API (`responses`): retries, refusals, messages.

Only non-streaming calls are stubbed here; the real engine covers the rest
(tests/integration/swarm).
"""

from __future__ import annotations

import json
from typing import Any

import docker
import pytest
import responses
from responses import matchers

from deployer.backends.swarm import SwarmBackend
from deployer.backends.swarm_types import FileReference, ServiceSpec
from deployer.errors import ServiceError
from tests.swarm_recordings import load

API = "http+docker://localhost/v1.41"
DIGEST = "sha256:" + "cd" * 32


def make_backend() -> SwarmBackend:
    return SwarmBackend(lambda: docker.DockerClient(base_url="unix:///nowhere", version="1.41"))


def make_spec(**overrides: Any) -> ServiceSpec:
    values: dict[str, Any] = {
        "name": "web",
        "image": "registry.example.com/acme/web",
        "digest": DIGEST,
        "instance": "prod",
        "port": 18001,
    }
    return ServiceSpec(**{**values, **overrides})


def service_json(version: int, name: str = "web", instance: str | None = "prod") -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(
        json.dumps(load("update_start_first_success").raw["observations"][-1]["service"])
    )
    raw["ID"] = f"id-{name}"
    raw["Version"] = {"Index": version}
    raw["Spec"]["Name"] = name
    raw["Spec"]["Labels"] = {"deployer.instance": instance} if instance else {}
    return raw


def stub_inspect(*versions: int, **kwargs: Any) -> None:
    for version in versions:
        responses.get(f"{API}/services/web", json=service_json(version, **kwargs))


def stub_write(version: int, status: int = 200, body: dict[str, Any] | None = None) -> None:
    responses.post(
        f"{API}/services/id-web/update",
        status=status,
        json=body if body is not None else {"Warnings": None},
        match=[matchers.query_param_matcher({"version": str(version)})],
    )


OUT_OF_SEQUENCE = {"message": "rpc error: code = Unknown desc = update out of sequence"}


@responses.activate(assert_all_requests_are_fired=True)
def test_an_update_reads_the_version_just_before_writing_and_returns_warnings() -> None:
    stub_inspect(41)
    stub_write(41, body={"Warnings": ["image could not be accessed on a registry"]})

    result = make_backend().update(make_spec())

    assert result.service_id == "id-web"
    assert not result.created
    assert not result.adopted
    assert not result.retried
    assert result.warnings == ("image could not be accessed on a registry",)
    body = json.loads(responses.calls[1].request.body or b"{}")
    assert body["TaskTemplate"]["ContainerSpec"]["Image"].endswith(f"@{DIGEST}")
    assert body["UpdateConfig"]["Order"] == "start-first"
    assert body["UpdateConfig"]["FailureAction"] == "rollback"
    assert body["RollbackConfig"]["FailureAction"] == "pause"


@responses.activate(assert_all_requests_are_fired=True)
def test_an_update_out_of_sequence_is_read_again_and_written_once_more() -> None:
    stub_inspect(41, 43)
    stub_write(41, status=500, body=OUT_OF_SEQUENCE)
    stub_write(43)

    result = make_backend().update(make_spec())

    assert result.retried


@responses.activate(assert_all_requests_are_fired=True)
def test_a_second_update_out_of_sequence_is_an_error_that_says_what_to_do() -> None:
    stub_inspect(41, 43)
    stub_write(41, status=500, body=OUT_OF_SEQUENCE)
    stub_write(43, status=500, body=OUT_OF_SEQUENCE)

    with pytest.raises(ServiceError, match="it changed again while deployer wrote it") as caught:
        make_backend().update(make_spec())

    assert caught.value.service == "web"


@responses.activate(assert_all_requests_are_fired=True)
def test_an_unlabelled_service_with_the_name_is_adopted() -> None:
    stub_inspect(7, instance=None)
    stub_write(7)

    result = make_backend().apply(make_spec())

    assert result.adopted
    assert not result.created


@responses.activate(assert_all_requests_are_fired=True)
def test_a_service_of_another_deployer_instance_is_not_taken_over() -> None:
    stub_inspect(7, instance="staging")

    with pytest.raises(ServiceError, match="belongs to deployer instance 'staging'"):
        make_backend().apply(make_spec())


@responses.activate(assert_all_requests_are_fired=True)
def test_a_missing_service_is_created_with_the_whole_spec() -> None:
    responses.get(f"{API}/services/web", status=404, json={"message": "service web not found"})
    responses.post(f"{API}/services/create", status=201, json={"ID": "new-id"})

    result = make_backend().apply(make_spec())

    assert result.created
    assert result.service_id == "new-id"
    body = json.loads(responses.calls[1].request.body or b"{}")
    assert body["Name"] == "web"
    assert body["Labels"]["deployer.instance"] == "prod"
    assert body["Mode"] == {"Replicated": {"Replicas": 1}}


@responses.activate(assert_all_requests_are_fired=True)
def test_a_name_the_engine_matched_as_an_id_prefix_is_no_such_service() -> None:
    responses.get(f"{API}/services/id", json=service_json(3, name="web"))

    assert make_backend().service("id") is None


@responses.activate(assert_all_requests_are_fired=True)
def test_secrets_and_configs_are_looked_up_by_exact_name() -> None:
    responses.get(
        f"{API}/secrets",
        json=[
            {"ID": "s1", "Spec": {"Name": "db"}},
            {"ID": "s2", "Spec": {"Name": "db-old"}},  # the name filter also matches prefixes
        ],
    )
    responses.get(f"{API}/configs", json=[{"ID": "c1", "Spec": {"Name": "app-conf"}}])
    stub_inspect(9)
    stub_write(9)

    make_backend().update(
        make_spec(secrets=(FileReference("db"),), configs=(FileReference("app-conf"),))
    )

    body = json.loads(responses.calls[-1].request.body or b"{}")
    container = body["TaskTemplate"]["ContainerSpec"]
    assert [secret["SecretID"] for secret in container["Secrets"]] == ["s1"]
    assert [config["ConfigID"] for config in container["Configs"]] == ["c1"]


@responses.activate(assert_all_requests_are_fired=True)
def test_a_missing_secret_is_named_with_how_to_create_it() -> None:
    responses.get(f"{API}/secrets", json=[])

    with pytest.raises(ServiceError, match=r"needs secret\(s\) db.*docker secret create NAME"):
        make_backend().update(make_spec(secrets=(FileReference("db"),)))


@responses.activate(assert_all_requests_are_fired=True)
def test_an_engine_that_is_no_swarm_manager_is_explained() -> None:
    responses.get(
        f"{API}/services/web",
        status=503,
        json={"message": 'This node is not a swarm manager. Use "docker swarm init"...'},
    )

    with pytest.raises(ServiceError, match=r"cannot read Swarm service web: .*DOCKER_HOST"):
        make_backend().service("web")


@responses.activate(assert_all_requests_are_fired=True)
def test_removing_a_service_that_is_gone_already_is_fine() -> None:
    responses.get(f"{API}/services/web", status=404, json={"message": "service web not found"})

    make_backend().remove("web")


@responses.activate(assert_all_requests_are_fired=True)
def test_tasks_carry_node_hostnames() -> None:
    seen = load("update_start_first_success").raw["observations"][-1]
    responses.get(f"{API}/tasks", json=seen["tasks"])
    responses.get(
        f"{API}/nodes",
        json=[
            {"ID": node, "Description": {"Hostname": name}} for node, name in seen["nodes"].items()
        ],
    )

    tasks = make_backend().tasks("id-web")

    assert {task.node for task in tasks} == set(seen["nodes"].values())
    assert len(tasks) == len(seen["tasks"])
