"""Fakes at deployer's own seams: a container engine with state, and nginx commands."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import requests

from deployer.backends.base import ContainerInfo, ContainerSpec
from deployer.errors import ContainerError, DockerError, RegistryError
from deployer.models import utc_now
from deployer.nginx import CommandResult


class FakeBackend:
    """An engine in memory. Images behave as registered: 'serve', 'exit', 'silent' or
    'crashloop' (keeps crashing; its restart policy brings it back each time)."""

    def __init__(self) -> None:
        self.tags: dict[tuple[str, str], str] = {}
        self.behaviour: dict[str, str] = {}
        self.pulled: set[str] = set()
        self.containers: dict[str, ContainerInfo] = {}
        self.instance_of: dict[str, str] = {}
        self._ids = itertools.count(1)

    def push(self, image: str, tag: str, digest: str, behaviour: str = "serve") -> str:
        self.tags[(image, tag)] = digest
        self.behaviour[digest] = behaviour
        return digest

    def resolve(self, image: str, tag: str) -> str:
        try:
            return self.tags[(image, tag)]
        except KeyError:
            raise RegistryError(
                f"{image}:{tag}", f"cannot resolve {image}:{tag}: not found"
            ) from None

    def pull(self, image: str, digest: str) -> None:
        if digest not in self.behaviour:
            raise RegistryError(f"{image}@{digest}", f"pull of {image}@{digest} failed: unknown")
        self.pulled.add(digest)

    def has_image(self, image: str, digest: str) -> bool:
        return digest in self.pulled

    def remove_image(self, image: str, digest: str) -> None:
        if any(container.digest == digest for container in self.containers.values()):
            raise DockerError(f"cannot remove image {image}@{digest}: in use by a container")
        self.pulled.discard(digest)

    def start(self, spec: ContainerSpec) -> ContainerInfo:
        digest = spec.labels["deployer.digest"]
        if digest not in self.pulled:
            raise ContainerError(spec.name, f"cannot start {spec.name}: image not pulled")
        if any(container.name == spec.name for container in self.containers.values()):
            raise ContainerError(spec.name, f"cannot start {spec.name}: name in use")
        exited = self.behaviour[digest] == "exit"
        restarts = 2 if self.behaviour[digest] == "crashloop" else 0
        info = ContainerInfo(
            id=f"{next(self._ids):064x}",
            name=spec.name,
            service=spec.labels["deployer.service"],
            image=spec.image,
            digest=digest,
            deployment=spec.labels["deployer.deployment"],
            address=spec.address or "10.0.0.1:8080",
            status="exited" if exited else "running",
            health=None,
            started_at=utc_now(),
            exit_code=3 if exited else None,
            restart_count=restarts,
        )
        self.containers[info.id] = info
        self.instance_of[info.id] = spec.labels["deployer.instance"]
        return info

    def inspect(self, container_id: str) -> ContainerInfo:
        if container_id not in self.containers:
            raise ContainerError(container_id, f"no container {container_id}")
        return self.containers[container_id]

    def logs(self, container_id: str, tail: int = 20) -> str:
        digest = self.containers[container_id].digest
        return "fatal: cannot read /etc/app.conf" if self.behaviour[digest] == "exit" else ""

    def stop(self, container_id: str, timeout: float) -> None:
        self.containers.pop(container_id, None)

    def remove(self, container_id: str) -> None:
        self.containers.pop(container_id, None)

    def list_managed(self, instance: str) -> list[ContainerInfo]:
        return [
            container
            for container in self.containers.values()
            if self.instance_of.get(container.id) == instance
        ]

    def running(self, service: str) -> list[ContainerInfo]:
        return [c for c in self.containers.values() if c.service == service]

    def crash(self, container_id: str) -> None:
        self.containers[container_id] = replace(self.containers[container_id], status="exited")

    def restarted_by_docker(self, container_id: str) -> None:
        """The app crashed and its restart policy brought it back: running again."""
        container = self.containers[container_id]
        self.containers[container_id] = replace(
            container, status="running", restart_count=container.restart_count + 1
        )

    def probe(self, url: str, timeout: float) -> int:
        """The HTTP health probe against this engine's containers."""
        address = url.split("/")[2]
        for container in self.containers.values():
            serves = self.behaviour[container.digest] == "serve"
            if container.address == address and container.status == "running" and serves:
                return 200
        raise requests.ConnectionError(f"connection refused: {address}")


class FakeNginxCommands:
    """`nginx -t` and `nginx -s reload`: fails the test when the file contains 'invalid'."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.reloads = 0
        self.fail_test = False

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        text = self.output.read_text() if self.output.exists() else ""
        if self.fail_test or "invalid" in text:
            return CommandResult(1, f"nginx: [emerg] invalid parameter in {self.output}:3")
        if "reload" in argv:
            self.reloads += 1
        return CommandResult(0, "")
