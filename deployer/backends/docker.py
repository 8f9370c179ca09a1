"""The only module that imports `docker`: engine operations, with errors translated once.

The client is built lazily on first use, never at import time. Registry credentials: deployer's
`registries:` entry for the image's registry, else the Docker client config (read afresh each
time, credential helpers included), else none; resolve and pull send exactly that, and a refusal
names the registry and what was tried (deployer.registries builds the words).
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.auth
import docker.errors
import docker.types
from docker.models.containers import _create_container_args  # docker-py's own option mapping

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
    ContainerProcess,
    ContainerSpec,
    Healthcheck,
    Unmanaged,
)
from deployer.backends.engine import ENGINE_ERRORS, LazyClient
from deployer.config import registry_of
from deployer.errors import ContainerError, ContainerMissing, DockerError, RegistryError
from deployer.logs import container_secrets, redact
from deployer.registries import (
    Credentials,
    RegistryLogins,
    anonymous,
    from_docker_config,
    is_refusal,
    refused,
)

log = logging.getLogger(__name__)
DOCKER_TIME = re.compile(
    r"(?P<when>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)?"
)


@contextmanager
def container_errors(reference: str, action: str, gone_is_fine: bool = False) -> Iterator[None]:
    """Translate the SDK's errors about container `reference`, once: not found ->
    ContainerMissing (or nothing, when gone is what the caller wanted), anything else ->
    ContainerError `cannot <action>: <why>`."""
    try:
        yield
    except docker.errors.NotFound as err:
        if gone_is_fine:
            return
        raise ContainerMissing(
            reference, f"no container {reference!r} on the engine: {_why(err)}"
        ) from err
    except ENGINE_ERRORS as err:
        raise ContainerError(reference, f"cannot {action}: {_why(err)}") from err


class DockerBackend:
    """Backend on a real Docker engine through the docker SDK."""

    def __init__(
        self, make_client: Callable[[], Any] | None = None, logins: RegistryLogins | None = None
    ) -> None:
        self._engine = LazyClient(make_client)
        self._logins = logins or RegistryLogins()

    @property
    def client(self) -> Any:
        return self._engine.get()

    def resolve(self, image: str, tag: str) -> str:
        """The registry's current digest for image:tag, without pulling."""
        reference = f"{image}:{tag}"
        credentials = self.credentials(image)
        auth = dict(credentials.auth)
        try:
            found = self.client.images.get_registry_data(reference, auth_config=auth)
        except ENGINE_ERRORS as err:
            what = f"cannot resolve {reference} at the registry"
            raise _registry_error(reference, what, err, credentials) from err
        digest: str = found.id
        return digest

    def pull(self, image: str, digest: str) -> None:
        """Pull image@digest; an error line anywhere in the stream fails the pull."""
        reference = f"{image}@{digest}"
        what = f"pull of {reference} failed"
        credentials = self.credentials(image)
        try:
            # The stream stays unnamed: as a local it (and its socket) would outlive an error
            # in the frame the traceback keeps.
            for item in self.client.api.pull(
                image, tag=digest, stream=True, decode=True, auth_config=dict(credentials.auth)
            ):
                if "error" in item or "errorDetail" in item:
                    detail = item.get("error") or item.get("errorDetail", {}).get("message")
                    raise _registry_error(reference, what, str(detail), credentials)
            self.client.images.get(reference)
        except ENGINE_ERRORS as err:
            raise _registry_error(reference, what, err, credentials) from err

    def credentials(self, image: str) -> Credentials:
        """What resolve and pull send to image's registry: deployer's `registries:` entry,
        else the Docker client config's, else none (sent as an explicit anonymous request)."""
        registry = registry_of(image)
        configured = self._logins.configured(registry)
        if configured is not None:
            return configured
        return _docker_config_credentials(registry, self._logins.docker_config)

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
        # Create and start through the API (docker-py's own mapping of the options): two calls,
        # where containers.run adds an inspect in between (the switch is on this path).
        arguments = {**run_arguments(spec), "image": spec.image}
        arguments["version"] = self.client.api._version
        try:
            created = self.client.api.create_container(**_create_container_args(arguments))
            self.client.api.start(created["Id"])
        except ENGINE_ERRORS as err:
            why = _why(err)
            redacted = redact(why, container_secrets(spec.secret_environment.values()))
            error = ContainerError(
                spec.name, f"cannot start {spec.name} from {spec.image}: {redacted}"
            )
            if redacted != why:  # the engine's own text held a secret: do not chain it
                raise error from None
            raise error from err
        info = self.inspect(created["Id"])
        if not info.address:
            raise ContainerError(
                spec.name,
                f"{spec.name} has no IPv4 address on network {spec.network} (IPv6 only, or not "
                "attached to it): nginx needs one to reach it; use a network with IPv4, or "
                "network: bridge or host",
            )
        return info

    def inspect(self, container_id: str) -> ContainerInfo:
        """Fresh state of one container."""
        with container_errors(container_id, f"inspect container {container_id}"):
            container = self.client.containers.get(container_id)
        return _to_info(container.attrs)

    def process(self, container_id: str, address: str) -> ContainerProcess:
        """The container's main process and where its app answers inside its network
        namespace; `address` is where nginx reaches it (ContainerInfo.address)."""
        with container_errors(container_id, f"inspect container {container_id}"):
            attrs = self.client.containers.get(container_id).attrs
        return _to_process(attrs, address)

    def logs(self, container_id: str, tail: int = 20) -> str:
        """The container's last output lines (stdout and stderr), or a note when unreadable."""
        try:
            raw: bytes = self.client.containers.get(container_id).logs(tail=tail)
        except ENGINE_ERRORS as err:
            return f"(logs unavailable: {_why(err)})"
        return raw.decode(errors="replace").rstrip()

    def stop(self, container_id: str, timeout: float) -> None:
        """SIGTERM (the image's STOPSIGNAL), then SIGKILL after timeout seconds; then remove."""
        with container_errors(container_id, f"stop container {container_id}", gone_is_fine=True):
            container = self.client.containers.get(container_id)
            container.stop(timeout=max(1, round(timeout)))
            container.remove(v=True)

    def halt(self, container_id: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL after timeout seconds; the container stays (start_again)."""
        with container_errors(container_id, f"stop container {container_id}"):
            self.client.containers.get(container_id).stop(timeout=max(1, round(timeout)))

    def start_again(self, container_id: str) -> None:
        """Start a stopped container again, as it was."""
        with container_errors(container_id, f"start container {container_id} again"):
            self.client.containers.get(container_id).start()

    def remove(self, container_id: str) -> None:
        """Kill and remove a container at once (used to roll back a failed start)."""
        with container_errors(container_id, f"remove container {container_id}", gone_is_fine=True):
            self.client.containers.get(container_id).remove(force=True, v=True)

    def run_in(self, container: str, argv: Sequence[str]) -> tuple[int, str]:
        """Run argv inside a running container, as its user (docker exec): status, output."""
        try:
            result = self.client.containers.get(container).exec_run(list(argv))
        except ENGINE_ERRORS as err:
            return 125, f"cannot run {argv[0]} in container {container}: {_why(err)}"
        output: bytes = result.output or b""
        return int(result.exit_code), output.decode(errors="replace").strip()

    def list_managed(self, instance: str, brief: bool = False) -> list[ContainerInfo]:
        """Every container (running or not) labelled for this deployer instance. brief: from
        the listing alone (one engine call: labels, name, state, address; no start time,
        restart count or health), as picking a port or finding leftovers needs."""
        if brief:
            return self._list_brief(instance)
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

    def _list_brief(self, instance: str) -> list[ContainerInfo]:
        try:
            summaries = self.client.api.containers(
                all=True, filters={"label": [f"{LABEL_INSTANCE}={instance}"]}
            )
        except ENGINE_ERRORS as err:
            raise DockerError(
                f"cannot list containers of instance {instance}: {_why(err)}"
            ) from err
        return [_to_info(_as_inspected(summary)) for summary in summaries]

    def inspect_unmanaged(self, reference: str) -> Unmanaged:
        """A container by name or id, whoever started it, with its image's digests."""
        with container_errors(reference, f"inspect container {reference!r}"):
            attrs = self.client.containers.get(reference).attrs
            image_attrs = self.client.images.get(attrs["Image"]).attrs
        return _to_unmanaged(attrs, image_attrs)

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


def _registry_error(
    reference: str, what: str, failure: Exception | str, credentials: Credentials
) -> RegistryError:
    """A refusal (missing or wrong credentials) names what was tried; anything else says why."""
    reason = failure if isinstance(failure, str) else _why(failure)
    status = getattr(failure, "status_code", None)
    if status in (401, 403) or is_refusal(reason):
        return RegistryError(reference, refused(reference, reason, credentials))
    return RegistryError(reference, f"{what}: {reason}")


def _docker_config_credentials(registry: str, path: Path) -> Credentials:
    """The Docker client config's credentials for registry (as docker-py resolves them: the
    credential helper for it, else credsStore, else an `auths` entry); none: anonymous."""
    try:
        with warnings.catch_warnings():
            # docker-py warns about a missing helper, then raises StoreError: reported below
            warnings.simplefilter("ignore")
            configs = _load_docker_config(path)
            found = configs.resolve_authconfig(registry)
    except (OSError, ValueError, docker.errors.DockerException) as err:
        raise RegistryError(
            registry,
            f"cannot read the credentials for registry {registry} from the Docker client "
            f"config {path}: {err}; fix that file or its credential helper, or give deployer's "
            f"registries: an entry for {registry}",
        ) from err
    if not found:  # no entry, or an empty one (`docker logout` leaves {})
        return anonymous(registry, path)
    helper = configs.get_credential_store(registry) if "ServerAddress" in found else None
    auth = {key: str(value) for key, value in found.items() if value is not None}
    return Credentials(registry, from_docker_config(registry, path, helper), auth)


def _load_docker_config(path: Path) -> Any:
    """docker-py's AuthConfig of the file at path (only that file: Docker's CLI does not fall
    back to ~/.docker when $DOCKER_CONFIG names a directory without one; docker-py would)."""
    if not path.is_file():
        return docker.auth.AuthConfig({})
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not data:
        return docker.auth.AuthConfig({})
    return docker.auth.load_config(config_dict=data)


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


def _to_process(attrs: dict[str, Any], address: str) -> ContainerProcess:
    """Where to count connections to the container that nginx reaches at `address`: on the
    host's network, that address; on the default bridge, the container port the host port
    is published from (any address: the namespace is the container's own); on a named
    network, the address itself (the container's IP there)."""
    state = attrs.get("State") or {}
    mode = (attrs.get("HostConfig") or {}).get("NetworkMode") or "default"
    host, _, port_text = address.rpartition(":")
    port = int(port_text) if port_text.isdigit() else 0
    listen_address, listen_port = host, port
    if mode in ("bridge", "default"):
        ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
        published = [
            key
            for key, bindings in ports.items()
            if any(binding.get("HostPort") == str(port) for binding in bindings or [])
        ]
        inner = published[0].split("/")[0] if published else ""
        listen_address, listen_port = "", int(inner) if inner.isdigit() else 0
    return ContainerProcess(
        id=attrs["Id"],
        pid=int(state.get("Pid") or 0),  # the engine says 0 when it is not running
        host_network=mode == "host",
        listen_address=listen_address,
        listen_port=listen_port,
    )


def _as_inspected(summary: dict[str, Any]) -> dict[str, Any]:
    """A /containers/json entry in the shape of an inspection (what _to_info reads)."""
    names = summary.get("Names") or [""]
    return {
        "Id": summary["Id"],
        "Name": names[0],
        "Config": {"Image": summary.get("Image", ""), "Labels": summary.get("Labels") or {}},
        "State": {"Status": summary.get("State", "unknown")},
        "NetworkSettings": summary.get("NetworkSettings") or {},
    }


def _to_unmanaged(attrs: dict[str, Any], image: dict[str, Any]) -> Unmanaged:
    settings = attrs.get("NetworkSettings") or {}
    ports = settings.get("Ports") or {}
    environment = dict(
        entry.split("=", 1)
        for entry in (attrs.get("Config") or {}).get("Env") or []
        if "=" in entry
    )
    return Unmanaged(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        status=(attrs.get("State") or {}).get("Status", "unknown"),
        network_mode=(attrs.get("HostConfig") or {}).get("NetworkMode") or "default",
        networks={
            name: network.get("IPAddress") or ""
            for name, network in (settings.get("Networks") or {}).items()
        },
        published={
            port: [(binding["HostIp"], int(binding["HostPort"])) for binding in bindings or []]
            for port, bindings in ports.items()
        },
        image=(attrs.get("Config") or {}).get("Image", ""),
        repo_digests=tuple(image.get("RepoDigests") or ()),
        image_id=image.get("Id", ""),
        environment=environment,
        started_at=_parse_time((attrs.get("State") or {}).get("StartedAt")),
    )


def _address(attrs: dict[str, Any], labels: dict[str, str]) -> str:
    """host:port nginx reaches the container at; "" on a named network where it has no IPv4
    address (never a guess: 127.0.0.1 there would be some other program)."""
    network = labels.get(LABEL_NETWORK, "host")
    if network in ("host", "bridge"):  # bridge: the port is published on 127.0.0.1
        return f"{LOOPBACK}:{labels.get(LABEL_PORT, '0')}"
    networks = attrs.get("NetworkSettings", {}).get("Networks") or {}
    address = (networks.get(network) or {}).get("IPAddress")
    return f"{address}:{labels.get(LABEL_CONTAINER_PORT, '0')}" if address else ""


def _parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 time (nanoseconds, or no fraction at all) as aware UTC; None if unset."""
    match = DOCKER_TIME.fullmatch(value or "")
    if match is None or match["when"].startswith("0001-"):
        return None
    fraction = (match["fraction"] or "0")[:6]  # Python takes at most microseconds
    zone = "+00:00" if match["zone"] in (None, "Z") else match["zone"]
    moment = datetime.fromisoformat(f"{match['when']}.{fraction}{zone}")
    return moment.astimezone(UTC)
