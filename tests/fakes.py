"""Fakes at deployer's own seams: a container engine with state, and nginx commands."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import requests

from deployer.backends.base import ContainerInfo, ContainerProcess, ContainerSpec, Unmanaged
from deployer.connection_sources import Source
from deployer.connections import Socket, make_endpoint
from deployer.errors import ContainerError, ContainerMissing, DockerError, RegistryError
from deployer.models import utc_now
from deployer.nginx import CommandResult

LOOPBACK_IP = IPv4Address("127.0.0.1")
ENGINE_CALLS = frozenset(
    "resolve pull has_image remove_image start inspect process logs stop halt start_again remove "
    "list_managed events inspect_unmanaged".split()
)


class FakeEvents:
    """An event stream of container ids; iteration ends once closed."""

    def __init__(self) -> None:
        self.ids: queue.Queue[str | None] = queue.Queue()

    def __iter__(self) -> Iterator[str]:
        while (container_id := self.ids.get()) is not None:
            yield container_id

    def close(self) -> None:
        self.ids.put(None)


class FakeBackend:
    """An engine in memory. Images behave as registered: 'serve', 'exit', 'silent',
    'crashloop' (keeps crashing; its restart policy brings it back each time), 'unhealthy'
    (answers HTTP, but its image HEALTHCHECK says unhealthy) or 'print-env' (prints its
    environment, then exits). `specs` keeps the spec each container was started from."""

    def __init__(self) -> None:
        self.tags: dict[tuple[str, str], str] = {}
        self.behaviour: dict[str, str] = {}
        self.pulled: set[str] = set()
        self.containers: dict[str, ContainerInfo] = {}
        self.specs: dict[str, ContainerSpec] = {}  # by container name
        self.instance_of: dict[str, str] = {}
        self._ids = itertools.count(1)
        self.streams: list[FakeEvents] = []
        self._lock = threading.Lock()
        self.down = False  # the engine cannot be reached: every call fails
        self.stop_fails = False  # `docker stop` fails (retire)
        self.unmanaged: dict[str, Unmanaged] = {}  # facts of containers run by hand
        self.digest_of: dict[str, str] = {}  # their images' digests (they carry no label)
        self.never_healthy: set[str] = set()  # container names whose health probe never passes
        self.lose_connection_after_create = False  # containers.run creates, then no answer
        # container name -> its connection count at each read by the drain (the last repeats);
        # containers not named here cannot be read: the drain waits its full cap, as before.
        self.connection_counts: dict[str, list[int]] = {}
        self.connection_reads: dict[str, int] = {}  # container name -> reads so far

    def __getattribute__(self, name: str) -> object:
        if name in ENGINE_CALLS and object.__getattribute__(self, "down"):
            raise DockerError("cannot reach the Docker engine: connection refused")
        return object.__getattribute__(self, name)

    def changed(self, container_id: str) -> None:
        """Tell every open event stream that a container changed."""
        with self._lock:
            for stream in self.streams:
                stream.ids.put(container_id)

    def events(self, instance: str) -> FakeEvents:
        stream = FakeEvents()
        with self._lock:
            self.streams.append(stream)
        return stream

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
        exited = self.behaviour[digest] in ("exit", "print-env")
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
            health="unhealthy" if self.behaviour[digest] == "unhealthy" else None,
            started_at=utc_now(),
            exit_code=3 if exited else None,
            restart_count=restarts,
        )
        self.containers[info.id] = info
        self.specs[spec.name] = spec
        self.instance_of[info.id] = spec.labels["deployer.instance"]
        self.changed(info.id)
        if self.lose_connection_after_create:
            self.down = True
            raise ContainerError(spec.name, f"cannot start {spec.name}: connection aborted")
        return info

    def inspect(self, container_id: str) -> ContainerInfo:
        found = self.find(container_id)
        if found is None:
            raise ContainerMissing(container_id, f"no container {container_id}")
        return found

    def process(self, container_id: str, address: str) -> ContainerProcess:
        """No real process: pid 0, as the engine says of a container that is not running
        (the drain's tests give it connections through a fake watcher instead)."""
        found = self.inspect(container_id)
        host, _, port = address.rpartition(":")
        return ContainerProcess(found.id, 0, True, host, int(port) if port.isdigit() else 0)

    def watch(self, container: ContainerInfo) -> Source | str:
        """The drain's connection source for a container (create_app's `watch`)."""
        counts = self.connection_counts.get(container.name)
        if counts is None:
            return f"the fake engine runs no process for {container.name}"
        host, _, port = container.address.rpartition(":")
        endpoint = make_endpoint(host, int(port))

        def read() -> list[Socket]:
            done = self.connection_reads.get(container.name, 0)
            self.connection_reads[container.name] = done + 1
            count = counts[min(done, len(counts) - 1)]
            return [
                Socket(endpoint.address or LOOPBACK_IP, endpoint.port, LOOPBACK_IP, 40000 + n, 1)
                for n in range(count)
            ]

        return Source(container.name, endpoint, "(fake)", read)

    def find(self, id_or_name: str) -> ContainerInfo | None:
        """A container by id or name, as the engine accepts either."""
        return next(
            (c for c in self.containers.values() if id_or_name in (c.id, c.name)),
            None,
        )

    def logs(self, container_id: str, tail: int = 20) -> str:
        container = self.containers[container_id]
        if self.behaviour[container.digest] == "print-env":
            spec = self.specs[container.name]
            environment = {**spec.secret_environment, **spec.environment}
            return "\n".join(f"{name}={value}" for name, value in environment.items())
        return (
            "fatal: cannot read /etc/app.conf" if self.behaviour[container.digest] == "exit" else ""
        )

    def stop(self, container_id: str, timeout: float) -> None:
        if self.stop_fails:
            raise ContainerError(container_id, f"cannot stop container {container_id}: timeout")
        self.remove(container_id)

    def halt(self, container_id: str, timeout: float) -> None:
        found = self.find(container_id)
        if found is None:
            raise ContainerMissing(container_id, f"no container {container_id}")
        self.containers[found.id] = replace(found, status="exited", exit_code=0)
        self.changed(found.id)

    def start_again(self, container_id: str) -> None:
        found = self.find(container_id)
        if found is None:
            raise ContainerMissing(container_id, f"no container {container_id}")
        self.containers[found.id] = replace(found, status="running", exit_code=None)
        self.changed(found.id)

    def remove(self, container_id: str) -> None:
        found = self.find(container_id)
        if found is not None:
            del self.containers[found.id]
            self.changed(found.id)

    def list_managed(self, instance: str, brief: bool = False) -> list[ContainerInfo]:
        return [
            container
            for container in self.containers.values()
            if self.instance_of.get(container.id) == instance
        ]

    def running(self, service: str) -> list[ContainerInfo]:
        return [c for c in self.containers.values() if c.service == service]

    def run_by_hand(
        self, name: str, digest: str, port: int, network: str = "host", image: str = ""
    ) -> ContainerInfo:
        """A container someone started without deployer: no labels, not in list_managed."""
        image = image or "registry.example.com/acme/web"
        info = ContainerInfo(
            id=f"{next(self._ids):064x}",
            name=name,
            service="",
            image=f"{image}:latest",
            digest="",
            deployment="",
            address=f"127.0.0.1:{port}",
            status="running",
            health=None,
            started_at=utc_now(),
        )
        self.containers[info.id] = info
        self.behaviour.setdefault(digest, "serve")
        self.unmanaged[info.id] = Unmanaged(
            id=info.id,
            name=name,
            status="running",
            network_mode=network,
            networks={},
            published={},
            image=f"{image}:latest",
            repo_digests=(f"{image}@{digest}",),
            image_id="sha256:" + "f" * 64,
            environment={"PORT": str(port)},
            started_at=info.started_at,
        )
        self.digest_of[info.id] = digest
        return info

    def inspect_unmanaged(self, reference: str) -> Unmanaged:
        found = self.find(reference)
        if found is None or found.id not in self.unmanaged:
            raise ContainerMissing(reference, f"no container {reference!r} on the engine")
        return replace(self.unmanaged[found.id], status=found.status)

    def crash(self, container_id: str) -> None:
        self.containers[container_id] = replace(self.containers[container_id], status="exited")
        self.changed(container_id)

    def restarted_by_docker(self, container_id: str) -> None:
        """The app crashed and its restart policy brought it back: running again."""
        container = self.containers[container_id]
        self.containers[container_id] = replace(
            container, status="running", restart_count=container.restart_count + 1
        )
        self.changed(container_id)

    def probe(self, url: str, timeout: float) -> int:
        """The HTTP health probe against this engine's containers."""
        address = url.split("/")[2]
        for container in self.containers.values():
            digest = self.digest_of.get(container.id, container.digest)
            serves = self.behaviour[digest] in ("serve", "unhealthy")
            serves = serves and container.name not in self.never_healthy
            if container.address == address and container.status == "running" and serves:
                return 200
        raise requests.ConnectionError(f"connection refused: {address}")


class FakeNginxCommands:
    """`nginx -t` and `nginx -s reload`: fails the test when the file contains 'invalid'.

    `running` is the text nginx serves by. `reload_outcomes` are consumed one per reload:
    "killed" takes the file and then fails (a reload command killed after it signalled the
    master), "refused" fails without nginx taking it; none left means success. `hold`, when
    set, is awaited by `nginx -t` (a slow test), and `testing` is set while it waits.
    """

    def __init__(self, output: Path) -> None:
        self.output = output
        self.reloads = 0
        self.fail_test = False
        self.reload_outcomes: list[str] = []
        self.running = ""
        self.hold: threading.Event | None = None
        self.testing = threading.Event()

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        text = self.output.read_text() if self.output.exists() else ""
        if self.fail_test or "invalid" in text:
            return CommandResult(1, f"nginx: [emerg] invalid parameter in {self.output}:3")
        if "reload" in argv:
            self.reloads += 1
            outcome = self.reload_outcomes.pop(0) if self.reload_outcomes else "ok"
            if outcome == "refused":
                return CommandResult(1, "nginx: [alert] kill(1234, 1) failed (3: No such process)")
            self.running = text
            if outcome == "killed":
                return CommandResult(124, "timed out after 60 s")
        elif self.hold is not None:
            self.testing.set()
            self.hold.wait(10)
        return CommandResult(0, "")
