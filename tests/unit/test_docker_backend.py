"""The Docker adapter's pure parts: engine attributes -> ContainerInfo, specs -> docker-py's
run arguments; and what reaches an error when the engine refuses a container."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest

from deployer.backends.base import ContainerSpec, Healthcheck, Ulimit
from deployer.backends.docker import DockerBackend, _parse_time, _to_info, run_arguments
from deployer.errors import ContainerError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T02:17:01.123456789Z", datetime(2026, 11, 24, 2, 17, 1, 123456, UTC)),
        ("2026-11-24T02:17:01Z", datetime(2026, 11, 24, 2, 17, 1, tzinfo=UTC)),
        ("2026-11-24T02:17:01.5Z", datetime(2026, 11, 24, 2, 17, 1, 500000, UTC)),
        ("2026-11-24T03:17:01+01:00", datetime(2026, 11, 24, 2, 17, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_docker_timestamps_with_or_without_a_fraction(
    value: str | None, expected: datetime | None
) -> None:
    assert _parse_time(value) == expected


def test_a_container_docker_restarted_once_is_running_not_stopped() -> None:
    info = _to_info(
        {
            "Id": "f" * 64,
            "Name": "/web-abc",
            "RestartCount": 1,
            "Config": {"Image": "img@sha256:1", "Labels": {"deployer.service": "web"}},
            "State": {"Status": "running", "StartedAt": "2026-11-24T02:17:01Z"},
        }
    )

    assert (info.status, info.restart_count, info.stopped) == ("running", 1, False)


FULL_SPEC = ContainerSpec(
    name="web-d1",
    image="registry.example.com/acme/web@sha256:" + "cd" * 32,
    labels={"deployer.service": "web", "com.example.team": "web"},
    environment={"MODE": "prod", "PORT": "18003"},
    network="host",
    host_port=18003,
    container_port=18003,
    secret_environment={"MODE": "from-file", "DB_PASSWORD": "hunter2-db"},
    command=("serve",),
    entrypoint=("/bin/tini", "--"),
    user="1000:1000",
    working_dir="/srv/app",
    volumes=("/srv/conf:/etc/app:ro", "cache:/cache:rw"),
    tmpfs={"/run": "size=64m"},
    extra_hosts={"db.internal": "10.0.0.5"},
    memory=256 * 1024 * 1024,
    nano_cpus=1_500_000_000,
    pids_limit=200,
    ulimits=(Ulimit("nofile", 1024, 4096),),
    log_driver="json-file",
    log_options={"max-size": "10m"},
    stop_signal="SIGQUIT",
    restart="on-failure",
    restart_retries=5,
    healthcheck=Healthcheck(test=("CMD-SHELL", "true"), interval=10_000_000_000, retries=3),
)


def test_every_spec_field_becomes_its_docker_py_argument() -> None:
    assert run_arguments(FULL_SPEC) == {
        "name": "web-d1",
        "detach": True,
        "labels": {"deployer.service": "web", "com.example.team": "web"},
        # env wins over env_file (as in Compose), and PORT is deployer's
        "environment": {"MODE": "prod", "DB_PASSWORD": "hunter2-db", "PORT": "18003"},
        "network_mode": "host",
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": 5},
        "command": ["serve"],
        "entrypoint": ["/bin/tini", "--"],
        "user": "1000:1000",
        "working_dir": "/srv/app",
        "volumes": ["/srv/conf:/etc/app:ro", "cache:/cache:rw"],
        "tmpfs": {"/run": "size=64m"},
        "extra_hosts": {"db.internal": "10.0.0.5"},
        "mem_limit": 256 * 1024 * 1024,
        "nano_cpus": 1_500_000_000,
        "pids_limit": 200,
        "ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 4096}],
        "log_config": {"Type": "json-file", "Config": {"max-size": "10m"}},
        "stop_signal": "SIGQUIT",
        "healthcheck": {
            "test": ["CMD-SHELL", "true"],
            "interval": 10_000_000_000,
            "timeout": 0,
            "start_period": 0,
            "retries": 3,
        },
    }


def test_a_spec_without_options_asks_for_what_deployer_always_did() -> None:
    spec = replace_options(FULL_SPEC)

    assert run_arguments(spec) == {
        "name": "web-d1",
        "detach": True,
        "labels": {"deployer.service": "web", "com.example.team": "web"},
        "environment": {"MODE": "prod", "PORT": "18003"},
        "network_mode": "host",
        "restart_policy": {"Name": "unless-stopped"},
    }


def test_log_options_alone_go_to_the_engines_default_driver() -> None:
    spec = dataclasses.replace(replace_options(FULL_SPEC), log_options={"max-size": "1m"})

    assert run_arguments(spec)["log_config"] == {"Type": "", "Config": {"max-size": "1m"}}


def test_a_bridge_and_a_named_network() -> None:
    bridge = dataclasses.replace(
        replace_options(FULL_SPEC), network="bridge", published={"8080/tcp": ("127.0.0.1", 1)}
    )
    named = dataclasses.replace(replace_options(FULL_SPEC), network="backend")

    assert run_arguments(bridge)["network_mode"] == "bridge"
    assert run_arguments(bridge)["ports"] == {"8080/tcp": ("127.0.0.1", 1)}
    assert (run_arguments(named)["network"], "network_mode" in run_arguments(named)) == (
        "backend",
        False,
    )


class RefusingApi:
    """docker-py's low-level API whose container create fails as the engine answers."""

    _version = "1.41"

    def __init__(self, explanation: str) -> None:
        self.explanation = explanation

    def create_container(self, **arguments: object) -> None:
        raise docker.errors.APIError("400 Client Error: Bad Request", explanation=self.explanation)


class RefusingClient:
    def __init__(self, explanation: str) -> None:
        self.api = RefusingApi(explanation)


def test_a_secret_value_the_engine_echoes_is_redacted_and_not_chained() -> None:
    backend = DockerBackend(lambda: RefusingClient('invalid environment variable: =hunter2-db "x"'))

    with pytest.raises(ContainerError) as caught:
        backend.start(FULL_SPEC)

    assert str(caught.value) == (
        f'cannot start web-d1 from {FULL_SPEC.image}: invalid environment variable: =[redacted] "x"'
    )
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_an_engine_error_without_secrets_keeps_its_cause() -> None:
    backend = DockerBackend(lambda: RefusingClient("Minimum memory limit allowed is 6MB"))

    with pytest.raises(ContainerError) as caught:
        backend.start(FULL_SPEC)

    assert str(caught.value).endswith(": Minimum memory limit allowed is 6MB")
    assert isinstance(caught.value.__cause__, docker.errors.APIError)


def replace_options(spec: ContainerSpec) -> ContainerSpec:
    """spec with every run option at its default."""
    return ContainerSpec(
        spec.name,
        spec.image,
        spec.labels,
        spec.environment,
        spec.network,
        spec.host_port,
        spec.container_port,
    )


def attrs_on(network: str, networks: dict[str, Any]) -> dict[str, Any]:
    labels = {
        "deployer.service": "web",
        "deployer.network": network,
        "deployer.port": "18000",
        "deployer.container-port": "8080",
    }
    return {
        "Id": "c" * 64,
        "Name": "/web-d1",
        "Config": {"Image": "img@sha256:1", "Labels": labels},
        "State": {"Status": "running"},
        "NetworkSettings": {"Networks": networks},
    }


@pytest.mark.parametrize(
    ("network", "networks", "address"),
    [
        ("host", {}, "127.0.0.1:18000"),
        ("bridge", {"bridge": {"IPAddress": "172.17.0.5"}}, "127.0.0.1:18000"),  # published
        ("backend", {"backend": {"IPAddress": "10.5.0.7"}}, "10.5.0.7:8080"),
        ("backend", {"backend": {"IPAddress": "", "GlobalIPv6Address": "fd00::7"}}, ""),
        ("backend", {"other": {"IPAddress": "10.6.0.2"}}, ""),  # not attached to it
    ],
)
def test_the_address_nginx_uses_and_none_without_an_ipv4_on_the_named_network(
    network: str, networks: dict[str, Any], address: str
) -> None:
    assert _to_info(attrs_on(network, networks)).address == address


class StubClient:
    """docker-py's client, as far as `start` uses it (create, start, inspect)."""

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs
        self.api = SimpleNamespace(
            _version="1.41",
            create_container=lambda **kwargs: {"Id": attrs["Id"]},
            start=lambda container_id: None,
        )
        self.containers = SimpleNamespace(get=lambda container_id: SimpleNamespace(attrs=attrs))


def test_a_container_without_an_ipv4_address_fails_its_start_instead_of_guessing() -> None:
    attrs = attrs_on("backend", {"backend": {"IPAddress": "", "GlobalIPv6Address": "fd00::7"}})
    backend = DockerBackend(make_client=lambda: StubClient(attrs))
    spec = ContainerSpec("web-d1", "img@sha256:1", {}, {}, "backend", 0, 8080)

    with pytest.raises(ContainerError) as caught:
        backend.start(spec)

    assert str(caught.value) == (
        "web-d1 has no IPv4 address on network backend (IPv6 only, or not attached to it): "
        "nginx needs one to reach it; use a network with IPv4, or network: bridge or host"
    )


@pytest.mark.parametrize(
    ("mode", "ports", "address", "expected"),
    [
        ("host", {}, "127.0.0.1:18000", (4242, True, "127.0.0.1", 18000)),
        # The default bridge: the container port the host port is published from, any address.
        (
            "bridge",
            {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18000"}], "9090/tcp": None},
            "127.0.0.1:18000",
            (4242, False, "", 8080),
        ),
        ("bridge", {"8080/tcp": [{"HostPort": "18001"}]}, "127.0.0.1:18000", (4242, False, "", 0)),
        ("backend", {}, "10.5.0.7:8080", (4242, False, "10.5.0.7", 8080)),  # a named network
    ],
)
def test_where_a_containers_connections_are_counted(
    mode: str, ports: dict[str, Any], address: str, expected: tuple[int, bool, str, int]
) -> None:
    attrs = {
        "Id": "c" * 64,
        "State": {"Status": "running", "Pid": 4242},
        "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Ports": ports},
    }
    backend = DockerBackend(make_client=lambda: StubClient(attrs))

    found = backend.process("c" * 64, address)

    assert (found.pid, found.host_network, found.listen_address, found.listen_port) == expected


def test_a_stopped_container_has_no_process() -> None:
    attrs = {"Id": "c" * 64, "State": {"Status": "exited", "Pid": 0}, "HostConfig": {}}

    assert DockerBackend(make_client=lambda: StubClient(attrs)).process("c", "127.0.0.1:1").pid == 0
