"""The only module that imports `docker`: engine operations, with errors translated once.

The client is built lazily on first use, never at import time.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import docker.types
import requests

from deployer.backends.base import (
    LABEL_CONTAINER_PORT,
    LABEL_DEPLOYMENT,
    LABEL_DIGEST,
    LABEL_INSTANCE,
    LABEL_NETWORK,
    LABEL_PORT,
    LABEL_SERVICE,
    LOOPBACK,
    ContainerInfo,
    ContainerSpec,
    Healthcheck,
)
from deployer.errors import ContainerError, ContainerMissing, DockerError, RegistryError
from deployer.logs import container_secrets, redact

log = logging.getLogger(__name__)
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
DOCKER_TIME = re.compile(
    r"(?P<when>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)?"
)


class DockerBackend:
    """Backend on a real Docker engine through the docker SDK."""

    def __init__(self, make_client: Callable[[], Any] | None = None) -> None:
        self._make_client = make_client or docker.from_env
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._make_client()
                except ENGINE_ERRORS as err:
                    raise DockerError(f"cannot reach the Docker engine: {err}") from err
            return self._client

    def resolve(self, image: str, tag: str) -> str:
        """The registry's current digest for image:tag, without pulling."""
        reference = f"{image}:{tag}"
        try:
            digest: str = self.client.images.get_registry_data(reference).id
        except ENGINE_ERRORS as err:
            raise RegistryError(
                reference, f"cannot resolve {reference} at the registry: {_why(err)}"
            ) from err
        return digest

    def pull(self, image: str, digest: str) -> None:
        """Pull image@digest; an error line anywhere in the stream fails the pull."""
        reference = f"{image}@{digest}"
        try:
            for item in self.client.api.pull(image, tag=digest, stream=True, decode=True):
                if "error" in item or "errorDetail" in item:
                    detail = item.get("error") or item.get("errorDetail", {}).get("message")
                    raise RegistryError(reference, f"pull of {reference} failed: {detail}")
            self.client.images.get(reference)
        except ENGINE_ERRORS as err:
            raise RegistryError(reference, f"pull of {reference} failed: {_why(err)}") from err

    def has_image(self, image: str, digest: str) -> bool:
        """True when image@digest is on the engine already (content-addressed: no pull needed)."""
        reference = f"{image}@{digest}"
        try:
            self.client.images.get(reference)
        except docker.errors.ImageNotFound:
            return False
        except ENGINE_ERRORS as err:
            raise DockerError(f"cannot look up image {reference}: {_why(err)}") from err
        return True

    def remove_image(self, image: str, digest: str) -> None:
        """Remove image@digest from the engine; gone already is fine, in use is an error."""
        reference = f"{image}@{digest}"
        try:
            self.client.images.remove(reference)
        except docker.errors.ImageNotFound:
            return
        except ENGINE_ERRORS as err:
            raise DockerError(f"cannot remove image {reference}: {_why(err)}") from err

    def start(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start a container from spec; no secret value reaches the error."""
        try:
            container = self.client.containers.run(spec.image, **run_arguments(spec))
        except ENGINE_ERRORS as err:
            why = _why(err)
            redacted = redact(why, container_secrets(spec.secret_environment.values()))
            error = ContainerError(
                spec.name, f"cannot start {spec.name} from {spec.image}: {redacted}"
            )
            if redacted != why:  # the engine's own text held a secret: do not chain it
                raise error from None
            raise error from err
        return self.inspect(container.id)

    def inspect(self, container_id: str) -> ContainerInfo:
        """Fresh state of one container."""
        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound as err:
            raise ContainerMissing(
                container_id, f"container {container_id} is not on the engine: {_why(err)}"
            ) from err
        except ENGINE_ERRORS as err:
            raise ContainerError(
                container_id, f"cannot inspect container {container_id}: {_why(err)}"
            ) from err
        return _to_info(container.attrs)

    def logs(self, container_id: str, tail: int = 20) -> str:
        """The container's last output lines (stdout and stderr), or a note when unreadable."""
        try:
            raw: bytes = self.client.containers.get(container_id).logs(tail=tail)
        except ENGINE_ERRORS as err:
            return f"(logs unavailable: {_why(err)})"
        return raw.decode(errors="replace").rstrip()

    def stop(self, container_id: str, timeout: float) -> None:
        """SIGTERM (the image's STOPSIGNAL), then SIGKILL after timeout seconds; then remove."""
        try:
            container = self.client.containers.get(container_id)
            container.stop(timeout=max(1, round(timeout)))
            container.remove(v=True)
        except docker.errors.NotFound:
            return
        except ENGINE_ERRORS as err:
            raise ContainerError(
                container_id, f"cannot stop container {container_id}: {_why(err)}"
            ) from err

    def remove(self, container_id: str) -> None:
        """Kill and remove a container at once (used to roll back a failed start)."""
        try:
            self.client.containers.get(container_id).remove(force=True, v=True)
        except docker.errors.NotFound:
            return
        except ENGINE_ERRORS as err:
            raise ContainerError(
                container_id, f"cannot remove container {container_id}: {_why(err)}"
            ) from err

    def run_in(self, container: str, argv: Sequence[str]) -> tuple[int, str]:
        """Run argv inside a running container, as its user (docker exec): status, output."""
        try:
            result = self.client.containers.get(container).exec_run(list(argv))
        except ENGINE_ERRORS as err:
            return 125, f"cannot run {argv[0]} in container {container}: {_why(err)}"
        output: bytes = result.output or b""
        return int(result.exit_code), output.decode(errors="replace").strip()

    def list_managed(self, instance: str) -> list[ContainerInfo]:
        """Every container (running or not) labelled for this deployer instance."""
        try:
            # The list can hold a container another service's deployment is creating right
            # now, which the engine cannot inspect yet ("No such container"): skip it. Port
            # pools of services never overlap, so it cannot hold a port this caller wants.
            containers = self.client.containers.list(
                all=True,
                filters={"label": [f"{LABEL_INSTANCE}={instance}"]},
                ignore_removed=True,
            )
        except ENGINE_ERRORS as err:
            raise DockerError(
                f"cannot list containers of instance {instance}: {_why(err)}"
            ) from err
        return [_to_info(container.attrs) for container in containers]

    def events(self, instance: str) -> DockerEvents:
        """The engine's container events for this instance, as a closable stream of ids."""
        try:
            stream = self.client.api.events(
                decode=True,
                filters={"type": "container", "label": f"{LABEL_INSTANCE}={instance}"},
            )
        except ENGINE_ERRORS as err:
            raise DockerError(f"cannot follow the engine's events: {_why(err)}") from err
        return DockerEvents(stream)


class DockerEvents:
    """docker-py's cancellable event stream, as container ids; ends when the engine goes."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[str]:
        try:
            for event in self._stream:
                container_id = event.get("id") or (event.get("Actor") or {}).get("ID")
                if container_id:
                    yield container_id
        except ENGINE_ERRORS:
            return  # the stream broke: the watcher reconnects and re-reads everything

    def close(self) -> None:
        try:
            self._stream.close()
        except (*ENGINE_ERRORS, OSError):
            log.debug("closing the engine's event stream failed", exc_info=True)


def run_arguments(spec: ContainerSpec) -> dict[str, Any]:
    """docker-py's `containers.run` keyword arguments for spec (pure); unset options left out."""
    named_network = spec.network not in ("host", "bridge")
    arguments = {
        "name": spec.name,
        "detach": True,
        "labels": spec.labels,
        "environment": {**spec.secret_environment, **spec.environment},
        "network_mode": None if named_network else spec.network,
        "network": spec.network if named_network else None,
        "ports": spec.published or None,
        "restart_policy": _restart_policy(spec),
        "command": list(spec.command) if spec.command is not None else None,
        "entrypoint": list(spec.entrypoint) if spec.entrypoint is not None else None,
        "user": spec.user,
        "working_dir": spec.working_dir,
        "volumes": list(spec.volumes) or None,
        "tmpfs": spec.tmpfs or None,
        "extra_hosts": spec.extra_hosts or None,
        "mem_limit": spec.memory,
        "nano_cpus": spec.nano_cpus,
        "pids_limit": spec.pids_limit,
        "ulimits": [
            docker.types.Ulimit(name=limit.name, soft=limit.soft, hard=limit.hard)
            for limit in spec.ulimits
        ]
        or None,
        "log_config": _log_config(spec),
        "stop_signal": spec.stop_signal,
        "healthcheck": _healthcheck(spec.healthcheck),
    }
    return {key: value for key, value in arguments.items() if value is not None}


def _restart_policy(spec: ContainerSpec) -> dict[str, Any]:
    if spec.restart == "on-failure":
        return {"Name": spec.restart, "MaximumRetryCount": spec.restart_retries}
    return {"Name": spec.restart}


def _log_config(spec: ContainerSpec) -> docker.types.LogConfig | None:
    if spec.log_driver is None and not spec.log_options:
        return None
    # An empty type is the engine's default driver (as `docker run --log-opt` alone).
    return docker.types.LogConfig(type=spec.log_driver or "", config=dict(spec.log_options))


def _healthcheck(healthcheck: Healthcheck | None) -> dict[str, Any] | None:
    if healthcheck is None:
        return None
    return {  # durations in nanoseconds; an empty test and zeros keep the image's
        "test": list(healthcheck.test),
        "interval": healthcheck.interval,
        "timeout": healthcheck.timeout,
        "start_period": healthcheck.start_period,
        "retries": healthcheck.retries,
    }


def _why(err: Exception) -> str:
    explanation = getattr(err, "explanation", None)
    return str(explanation or err).strip()


def _to_info(attrs: dict[str, Any]) -> ContainerInfo:
    labels: dict[str, str] = attrs.get("Config", {}).get("Labels") or {}
    state: dict[str, Any] = attrs.get("State", {})
    health = (state.get("Health") or {}).get("Status")
    return ContainerInfo(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        service=labels.get(LABEL_SERVICE, ""),
        image=attrs.get("Config", {}).get("Image", ""),
        digest=labels.get(LABEL_DIGEST, ""),
        deployment=labels.get(LABEL_DEPLOYMENT, ""),
        address=_address(attrs, labels),
        status=state.get("Status", "unknown"),
        health=health,
        started_at=_parse_time(state.get("StartedAt")),
        restart_count=int(attrs.get("RestartCount", 0) or 0),
        exit_code=state.get("ExitCode") if state.get("Status") != "running" else None,
    )


def _address(attrs: dict[str, Any], labels: dict[str, str]) -> str:
    network = labels.get(LABEL_NETWORK, "host")
    if network in ("host", "bridge"):
        return f"{LOOPBACK}:{labels.get(LABEL_PORT, '0')}"
    networks = attrs.get("NetworkSettings", {}).get("Networks") or {}
    address = (networks.get(network) or {}).get("IPAddress") or LOOPBACK
    return f"{address}:{labels.get(LABEL_CONTAINER_PORT, '0')}"


def _parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 time (nanoseconds, or no fraction at all) as aware UTC; None if unset."""
    match = DOCKER_TIME.fullmatch(value or "")
    if match is None or match["when"].startswith("0001-"):
        return None
    fraction = (match["fraction"] or "0")[:6]  # Python takes at most microseconds
    zone = "+00:00" if match["zone"] in (None, "Z") else match["zone"]
    moment = datetime.fromisoformat(f"{match['when']}.{fraction}{zone}")
    return moment.astimezone(UTC)
