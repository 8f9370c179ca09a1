"""Container specs: a pure builder, tested by equality."""

from __future__ import annotations

from deployer.backends.base import ContainerSpec
from deployer.config import ServiceConfig, parse_config
from deployer.rollout.containers import make_container_spec

DIGEST = "sha256:" + "cd" * 32


def service(**extra: object) -> ServiceConfig:
    data = {"image": "registry.example.com/acme/web", "ports": "18000-18009", **extra}
    return parse_config({"services": {"web": data}}, environ={"DEPLOYER_TOKEN": "x" * 20}).services[
        "web"
    ]


def test_host_network_spec_passes_the_pool_port_as_PORT() -> None:
    spec = make_container_spec("web", service(env={"MODE": "prod"}), DIGEST, "d1", 18003, "main")

    assert spec == ContainerSpec(
        name="web-d1",
        image=f"registry.example.com/acme/web@{DIGEST}",
        labels={
            "deployer.service": "web",
            "deployer.digest": DIGEST,
            "deployer.deployment": "d1",
            "deployer.instance": "main",
            "deployer.port": "18003",
            "deployer.network": "host",
            "deployer.container-port": "18003",
        },
        environment={"MODE": "prod", "PORT": "18003"},
        network="host",
        host_port=18003,
        container_port=18003,
        published={},
    )
    assert spec.address == "127.0.0.1:18003"


def test_bridge_spec_publishes_the_container_port_on_loopback_only() -> None:
    spec = make_container_spec(
        "web", service(network="bridge", port=8080), DIGEST, "d2", 18004, "main"
    )

    assert spec.published == {"8080/tcp": ("127.0.0.1", 18004)}
    assert spec.environment["PORT"] == "8080"
    assert spec.address == "127.0.0.1:18004"


def test_named_network_address_is_known_only_after_start() -> None:
    spec = make_container_spec("web", service(network="backend"), DIGEST, "d3", 18005, "main")

    assert spec.network == "backend"
    assert spec.published == {}
    assert spec.address is None
