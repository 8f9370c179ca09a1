"""The registry proxy and the registry damage helpers, seen through the real engine.

The exact engine errors (through deployer's DockerBackend) are asserted in full: deployer's
messages for these faults will be built around them.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.backends.docker import DockerBackend
from deployer.errors import RegistryError
from deployer.sandbox import ImageFactory, LocalRegistry, TcpProxy
from deployer.sandbox.images import PushedImage
from tests.testbed import SESSION

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(engine: str) -> DockerBackend:
    return DockerBackend()


def fresh(images: ImageFactory, name: str) -> PushedImage:
    """A version never built before, its local copy removed: pulling it fetches its blobs."""
    pushed = images.build(name, f"v-{uuid.uuid4().hex[:8]}", tag="latest")
    images.remove_local(pushed)
    return pushed


def test_the_engine_resolves_and_pulls_through_the_registry_proxy(
    registry_proxy: TcpProxy, registry: LocalRegistry, images: ImageFactory, backend: DockerBackend
) -> None:
    pushed = fresh(images, "via-proxy")
    via = registry_proxy.rehost(pushed.repository)
    config = registry.manifest(pushed.repository, pushed.digest)["config"]["digest"]
    app_layer = registry.layers(pushed.repository, pushed.digest)[-1]

    resolved = backend.resolve(via, "latest")
    resolve_requests = [str(request) for request in registry_proxy.requests()]
    backend.pull(via, resolved)
    images.remove_local(pushed, via)

    assert via == f"{registry_proxy.address}/t{SESSION}/via-proxy"
    assert resolved == pushed.digest
    name = f"t{SESSION}/via-proxy"
    # resolve (the engine's distribution inspect) reads the manifest and the image config
    assert resolve_requests == [
        "GET /v2/ -> 200",
        f"HEAD /v2/{name}/manifests/latest -> 200",
        f"GET /v2/{name}/manifests/{pushed.digest} -> 200",
        f"GET /v2/{name}/blobs/{config} -> 200",
    ]
    fetched = {request.path for request in registry_proxy.requests("GET", ".*/blobs/.*")}
    assert f"/v2/{name}/blobs/{app_layer}" in fetched


def test_delay_on_a_layer_blob_slows_the_pull_but_not_resolve(
    registry_proxy: TcpProxy, registry: LocalRegistry, images: ImageFactory, backend: DockerBackend
) -> None:
    pushed = fresh(images, "slow-blobs")
    via = registry_proxy.rehost(pushed.repository)
    app_layer = registry.layers(pushed.repository, pushed.digest)[-1]
    layer = registry_proxy.delay(1.0, "GET", f"/v2/.*/blobs/{app_layer}")

    began = time.monotonic()
    digest = backend.resolve(via, "latest")
    resolved_in = time.monotonic() - began
    backend.pull(via, digest)
    pulled_in = time.monotonic() - began - resolved_in
    images.remove_local(pushed, via)

    assert resolved_in < 0.8
    assert 1.0 <= pulled_in < 2.5
    assert layer.fired.is_set()


def test_hang_holds_a_pull_until_restore(registry_proxy: TcpProxy, images: ImageFactory) -> None:
    pushed = fresh(images, "hang")
    via = registry_proxy.rehost(pushed.repository)

    registry_proxy.hang()
    pull = subprocess.Popen(
        ["docker", "pull", f"{via}@{pushed.digest}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(1.0)
        hanging = pull.poll() is None
        connections = registry_proxy.open_connections
        registry_proxy.restore()
        released = time.monotonic()
        output, _ = pull.communicate(timeout=20)
    finally:
        if pull.poll() is None:
            pull.kill()
            pull.communicate()
    images.remove_local(pushed, via)

    assert hanging
    assert connections >= 1  # the engine got in and waits for an answer
    assert pull.returncode == 0, output
    assert time.monotonic() - released < 5
    assert f"Status: Downloaded newer image for {via}@{pushed.digest}" in output


def test_cut_registry_proxy_fails_resolve_at_once(
    registry_proxy: TcpProxy, images: ImageFactory, backend: DockerBackend
) -> None:
    pushed = images.build("cut", "v1", tag="latest")
    via = registry_proxy.rehost(pushed.repository)

    registry_proxy.cut()
    began = time.monotonic()
    with pytest.raises(RegistryError) as failed:
        backend.resolve(via, "latest")
    took = time.monotonic() - began
    registry_proxy.restore()

    assert took < 1
    assert str(failed.value) == (
        f"cannot resolve {via}:latest at the registry: Get "
        f'"http://{registry_proxy.address}/v2/": dial tcp {registry_proxy.address}: '
        "connect: connection refused"
    )
    assert backend.resolve(via, "latest") == pushed.digest


def test_deleted_tag_fails_resolve_with_manifest_unknown(
    registry: LocalRegistry, images: ImageFactory, backend: DockerBackend
) -> None:
    pushed = images.build("no-tag", f"v-{uuid.uuid4().hex[:8]}", tag="latest")

    registry.delete_tag(pushed.repository, "latest")

    with pytest.raises(RegistryError) as failed:
        backend.resolve(pushed.repository, "latest")
    assert str(failed.value) == (
        f"cannot resolve {pushed.repository}:latest at the registry: "
        "manifest unknown: manifest unknown"
    )
    # only the tag went: the manifest is still there by digest
    assert registry.manifest(pushed.repository, pushed.digest)["layers"]


def test_deleted_manifest_fails_the_pull_by_digest(
    registry: LocalRegistry, images: ImageFactory, backend: DockerBackend
) -> None:
    pushed = fresh(images, "no-manifest")
    digest = backend.resolve(pushed.repository, "latest")

    registry.delete_manifest(pushed.repository, digest)

    with pytest.raises(RegistryError) as failed:
        backend.pull(pushed.repository, digest)
    reference = f"{pushed.repository}@{digest}"
    assert str(failed.value) == (
        f"pull of {reference} failed: manifest for {reference} not found: "
        "manifest unknown: manifest unknown"
    )


def test_deleted_layer_blob_resolves_but_fails_the_pull(
    registry: LocalRegistry, images: ImageFactory, backend: DockerBackend
) -> None:
    pushed = fresh(images, "no-blob")
    layers = registry.layers(pushed.repository, pushed.digest)

    registry.delete_blob(layers[-1])  # the app's own layer (the busybox one is shared)

    assert backend.resolve(pushed.repository, "latest") == pushed.digest
    with pytest.raises(RegistryError) as failed:
        backend.pull(pushed.repository, pushed.digest)
    assert str(failed.value) == (
        f"pull of {pushed.repository}@{pushed.digest} failed: unknown blob"
    )
    assert not backend.has_image(pushed.repository, pushed.digest)


@pytest.fixture
def own_registry(engine: str, tmp_path: Path) -> Iterator[LocalRegistry]:
    """A registry of this test alone, so stopping it disturbs no other test."""
    with LocalRegistry(tmp_path / "registry") as running:
        yield running


def test_stopped_registry_is_down_until_started_again(
    own_registry: LocalRegistry, backend: DockerBackend, tmp_path: Path
) -> None:
    images = ImageFactory(own_registry.address, f"t{SESSION}", tmp_path / "images")
    pushed = images.build("down", "v1", tag="latest")

    own_registry.stop()
    with pytest.raises(RegistryError) as failed:
        backend.resolve(pushed.repository, "latest")
    own_registry.start()

    assert str(failed.value) == (
        f"cannot resolve {pushed.repository}:latest at the registry: Get "
        f'"http://{own_registry.address}/v2/": dial tcp {own_registry.address}: '
        "connect: connection refused"
    )
    assert backend.resolve(pushed.repository, "latest") == pushed.digest


def local_references(address: str) -> list[str]:
    listing = subprocess.run(
        ["docker", "images", "--digests", "--format", "{{.Repository}}:{{.Tag}}@{{.Digest}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in listing.splitlines() if line.startswith(f"{address}/")]


def test_a_registry_that_leaves_takes_the_local_images_naming_it_along(
    engine: str, backend: DockerBackend, tmp_path: Path
) -> None:
    with LocalRegistry(tmp_path / "registry") as leaving:
        images = ImageFactory(leaving.address, f"t{SESSION}", tmp_path / "images")
        first = images.build("leaving", "v1", tag="latest")
        second = images.build("leaving", "v2", tag="latest")  # v1 keeps only its digest
        images.remove_local(second)
        backend.pull(second.repository, second.digest)  # pulled by digest: no tag
        # the engine names every kind: tagged, untagged with a digest, pulled by digest
        names = local_references(leaving.address)
        assert {f"{first.repository}:<none>@{first.digest}"} <= set(names)
        assert any(name.endswith(f"@{second.digest}") for name in names)

    assert local_references(leaving.address) == []


def test_a_registry_proxy_that_leaves_takes_the_images_pulled_through_it_along(
    registry: LocalRegistry, images: ImageFactory, backend: DockerBackend
) -> None:
    pushed = fresh(images, "through-proxy")
    with TcpProxy(registry.address) as proxy:
        backend.pull(proxy.rehost(pushed.repository), pushed.digest)
        assert local_references(proxy.address)  # named by the proxy's address

    assert local_references(proxy.address) == []
