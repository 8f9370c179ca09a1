"""A real Docker registry (Debian's docker-registry) on a 127.0.0.1 port.

Besides start/stop (stop() then start() again is "registry down" and back, same port and
content), it can damage what it stores, for fault tests::

    registry.delete_tag(pushed.repository, "latest")     # resolve: "manifest unknown"
    registry.delete_manifest(pushed.repository, pushed.digest)  # pull by digest fails
    registry.delete_blob(registry.layers(pushed.repository, pushed.digest)[-1])
                                                   # resolve works, the pull fails

`repository` is either `host:port/ns/name` (as ImageFactory and PushedImage spell it) or
`ns/name`. The engine fetches only the blobs it lacks (every test image shares the busybox
layer, which is always there): delete the last layer, of a version never pulled before, and
remove the local copy (ImageFactory.remove_local) before the pull.

With `users={"alice": "secret"}` it asks for HTTP basic auth (the registry's htpasswd auth; the
file made with `htpasswd -Bbn` from Debian's apache2-utils): pushing then needs `docker login`
(ImageFactory.login), and the damage helpers send the first user's credentials.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deployer.sandbox.net import LOOPBACK, free_port, wait_for_http
from deployer.sandbox.process import SandboxProcess, StartStop

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)

IMAGE_LINE = "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}"  # `docker images --format`

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {address}
"""
HTPASSWD_AUTH = """\
auth:
  htpasswd:
    realm: deployer-sandbox
    path: {path}
"""


class LocalRegistry(StartStop):
    """docker-registry serving from state_dir; Docker trusts loopback registries without TLS."""

    def __init__(
        self, state_dir: Path, port: int | None = None, users: Mapping[str, str] | None = None
    ) -> None:
        self.state_dir = state_dir
        self.port = port or free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.users = dict(users or {})
        self._process = SandboxProcess(
            "docker-registry",
            ["docker-registry", "serve", str(state_dir / "registry.yml")],
            state_dir / "registry.log",
        )

    def start(self) -> LocalRegistry:
        """Write the config, start the registry and wait until /v2/ answers."""
        if shutil.which("docker-registry") is None:
            raise RuntimeError("docker-registry is not installed (Debian package docker-registry)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = REGISTRY_CONFIG.format(root=self.state_dir / "data", address=self.address)
        if self.users:
            htpasswd = self.state_dir / "htpasswd"
            htpasswd.write_text(make_htpasswd(self.users))
            config += HTPASSWD_AUTH.format(path=htpasswd)
        (self.state_dir / "registry.yml").write_text(config)
        self._process.start()
        try:
            # With auth, /v2/ answers 401 to a request without credentials: up all the same.
            wait_for_http(f"http://{self.address}/v2/", 20, 401 if self.users else 200)
        except TimeoutError as err:
            self._process.stop()
            raise RuntimeError(f"{err}; registry log: {self._process.log_tail()}") from err
        return self

    def stop(self) -> None:
        """Stop the registry process (start() brings it back on the same port and data)."""
        self._process.stop()

    def leave(self) -> None:
        """Gone for good: the local images that name it go too."""
        remove_local_images(self.address)

    @property
    def storage(self) -> Path:
        """The filesystem storage driver's root of the v2 layout."""
        return self.state_dir / "data" / "docker" / "registry" / "v2"

    def manifest(self, repository: str, reference: str) -> dict[str, Any]:
        """The image manifest of repository:tag or repository@digest, as JSON."""
        path = f"/v2/{repository_path(repository)}/manifests/{reference}"
        with self._request("GET", path, {"Accept": MANIFEST_TYPES}) as answer:
            manifest: dict[str, Any] = json.load(answer)
        return manifest

    def layers(self, repository: str, reference: str) -> list[str]:
        """The layer digests of an image, base layer first."""
        return [layer["digest"] for layer in self.manifest(repository, reference)["layers"]]

    def delete_tag(self, repository: str, tag: str) -> None:
        """Remove a tag (its manifest stays reachable by digest): resolving the tag fails."""
        tag_dir = self._repository_dir(repository) / "_manifests" / "tags" / tag
        if not tag_dir.is_dir():
            raise FileNotFoundError(f"no tag {tag} of {repository} in {self.storage}")
        shutil.rmtree(tag_dir)

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest through the registry API (tags pointing at it go with it)."""
        path = f"/v2/{repository_path(repository)}/manifests/{digest}"
        with self._request("DELETE", path, {}):
            pass

    def delete_blob(self, digest: str) -> None:
        """Delete a blob's data from storage: manifests still name it, fetching it fails."""
        algorithm, _, hex_digest = digest.partition(":")
        data = self.storage / "blobs" / algorithm / hex_digest[:2] / hex_digest / "data"
        if not data.is_file():
            raise FileNotFoundError(f"no blob {digest} in {self.storage}")
        data.unlink()

    def _repository_dir(self, repository: str) -> Path:
        return self.storage / "repositories" / repository_path(repository)

    def _request(self, method: str, path: str, headers: dict[str, str]) -> Any:
        if self.users:
            user, password = next(iter(self.users.items()))
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers = {**headers, "Authorization": f"Basic {basic}"}
        request = urllib.request.Request(
            f"http://{self.address}{path}", method=method, headers=headers
        )
        return urllib.request.urlopen(request, timeout=10)  # noqa: S310 (loopback http only)


def remove_local_images(address: str) -> None:
    """Remove every local image reference into the registry at `address` (a sandbox registry's
    or proxy's port is its own run's).

    A registry that is gone leaves behind every image pushed to it or pulled from it
    (about 70 a test session, thousands after a day of runs, and an engine listing
    thousands of images is slower at every call). By reference, never by image id: an
    identical image built for another registry shares the id; an untagged image with no
    digest is removed by id without force, which the engine refuses when another
    reference shares it. An image a container still uses stays.
    """
    try:
        listing = subprocess.run(
            ["docker", "images", "--digests", "--format", IMAGE_LINE],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:  # no docker CLI: no engine to leave images in
        return
    mine = [
        reference
        for line in listing.stdout.splitlines()
        if (reference := _local_reference(line, address)) is not None
    ]
    for start in range(0, len(mine), 100):
        subprocess.run(
            ["docker", "image", "rm", *mine[start : start + 100]],
            capture_output=True,
            check=False,
        )


def _local_reference(line: str, address: str) -> str | None:
    """The reference to remove for one `docker images` line naming a repository at `address`."""
    words = line.split()
    if len(words) != 4 or not words[0].startswith(f"{address}/"):
        return None
    repository, tag, digest, image_id = words
    if tag != "<none>":
        return f"{repository}:{tag}"
    return f"{repository}@{digest}" if digest != "<none>" else image_id


def make_htpasswd(users: Mapping[str, str]) -> str:
    """htpasswd lines (bcrypt, which the registry requires) made by `htpasswd -Bbn`."""
    if shutil.which("htpasswd") is None:
        raise RuntimeError("htpasswd is not installed (Debian package apache2-utils)")
    lines = []
    for user, password in users.items():
        result = subprocess.run(
            ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"htpasswd failed for user {user}: {result.stderr.strip()}")
        lines.append(result.stdout.strip())
    return "\n".join(lines) + "\n"


def repository_path(repository: str) -> str:
    """`ns/name` from `host:port/ns/name` or `ns/name`."""
    head, sep, rest = repository.partition("/")
    return rest if sep and (":" in head or "." in head or head == "localhost") else repository
