"""The real engine and registry: build, push, resolve, pull through the SDK, run, reach."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from deployer.backends.docker import DockerBackend
from deployer.config import parse_config
from deployer.errors import RegistryError
from deployer.rollout.containers import make_container_spec
from deployer.sandbox import ImageFactory
from deployer.sandbox.net import wait_for_http

pytestmark = pytest.mark.integration


def test_pushed_image_is_resolved_pulled_and_served_over_host_networking(
    images: ImageFactory, instance: str, port_pool: Callable[[int], str]
) -> None:
    pushed = images.build("hello", "v1")
    images.remove_local(pushed)  # the pull below must fetch from the registry
    backend = DockerBackend()

    digest = backend.resolve(pushed.repository, "v1")
    backend.pull(pushed.repository, digest)
    service = parse_config(
        {"services": {"web": {"image": pushed.repository, "ports": port_pool(2)}}},
        environ={"DEPLOYER_TOKEN": "t" * 32},
    ).services["web"]
    assert service.ports is not None
    spec = make_container_spec("web", service, digest, "d1", service.ports.first, instance)
    container = backend.start(spec)

    assert digest == pushed.digest
    assert wait_for_http(f"http://{container.address}/version", timeout=10) == "v1\n"
    assert backend.inspect(container.id).status == "running"
    assert [found.id for found in backend.list_managed(instance)] == [container.id]
    backend.stop(container.id, timeout=5)
    assert backend.list_managed(instance) == []


def test_resolving_a_tag_the_registry_lacks_names_the_reference(images: ImageFactory) -> None:
    backend = DockerBackend()
    reference = images.repository("never-pushed")

    with pytest.raises(RegistryError, match=f"cannot resolve {reference}:v9"):
        backend.resolve(reference, "v9")


def test_pulling_an_unknown_digest_fails_instead_of_using_a_local_image(
    images: ImageFactory,
) -> None:
    pushed = images.build("hello", "v1")
    backend = DockerBackend()
    missing = "sha256:" + "0" * 64

    with pytest.raises(RegistryError, match=r"pull of .*@sha256:0000"):
        backend.pull(pushed.repository, missing)
