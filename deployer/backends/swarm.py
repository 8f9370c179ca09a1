"""Swarm services through the docker SDK: the second module that imports `docker`.

Every write states the whole spec (built by the pure swarm_api.make_service_document): image
pinned `repo@sha256:...`, UpdateConfig start-first + rollback, RollbackConfig, labels. Before
each write the service is read again (its version is the optimistic lock); an "update out of
sequence" answer means someone wrote in between: read again and write once more. SDK and
transport exceptions are translated once, by `engine_errors`, into deployer.errors classes.
Registry credentials (the CLI's --with-registry-auth): resolve, create and update send exactly
the credentials the container backend would (deployer's `registries:` entry, else the Docker
client config's, else none; `credentials`), so every node can pull the pinned image; the
manager stores them with the service for its tasks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.auth
import docker.errors

from deployer.backends.base import LABEL_INSTANCE
from deployer.backends.docker import DockerBackend
from deployer.backends.engine import ENGINE_ERRORS, LazyClient
from deployer.backends.swarm_api import (
    make_service_document,
    node_address,
    parse_service,
    parse_task,
)
from deployer.backends.swarm_types import (
    FileReference,
    ServiceSpec,
    ServiceState,
    TaskInfo,
    WriteResult,
)
from deployer.config import registry_of
from deployer.errors import ServiceError

log = logging.getLogger(__name__)
OUT_OF_SEQUENCE = "update out of sequence"
TASK_LABEL = "com.docker.swarm.task.id="


class _OutOfSequence(Exception):
    """The service changed between our read and our write (internal: update retries once)."""


@contextmanager
def engine_errors(service: str, action: str) -> Iterator[None]:
    """Translate docker SDK and transport errors into ServiceError: 'cannot <action>: <why>'."""
    try:
        yield
    except ENGINE_ERRORS as err:
        if isinstance(err, docker.errors.APIError) and OUT_OF_SEQUENCE in _why(err):
            raise _OutOfSequence(_why(err)) from err
        raise ServiceError(service, f"cannot {action}: {_explain(err)}") from err


class SwarmBackend:
    """Swarm services on a manager node, through the docker SDK (client built lazily)."""

    def __init__(
        self, make_client: Callable[[], Any] | None = None, registry: DockerBackend | None = None
    ) -> None:
        self._engine = LazyClient(make_client)
        self._writing = threading.Lock()  # the SDK reads a write's credentials from the client
        self._hostnames: dict[str, str] = {}
        self._addresses: dict[str, str] = {}
        # Resolving a tag and choosing credentials are the container backend's (one client).
        self._registry = registry or DockerBackend(self._engine.get)

    @property
    def client(self) -> Any:
        return self._engine.get()

    def resolve(self, image: str, tag: str) -> str:
        """The registry's current digest for image:tag (deployer pins it; the daemon won't)."""
        return self._registry.resolve(image, tag)

    def service(self, name: str) -> ServiceState | None:
        """The service's current state, or None when there is no such service."""
        attrs = self._inspect(name)
        return None if attrs is None else parse_service(attrs)

    def apply(self, spec: ServiceSpec) -> WriteResult:
        """Create the service on its first deployment, else update (adopting it if unlabelled)."""
        if self._inspect(spec.name) is None:
            return self.create(spec)
        return self.update(spec)

    def create(self, spec: ServiceSpec) -> WriteResult:
        """Create the service from spec; returns its id and the engine's warnings."""
        document = make_service_document(spec, *self._file_ids(spec))
        with (
            self._registry_auth(spec.image),
            engine_errors(spec.name, f"create Swarm service {spec.name}"),
        ):
            answer = self.client.api.create_service(**document)
        warnings = _warnings(answer)
        for warning in warnings:
            log.warning("creating Swarm service %s: the engine warns: %s", spec.name, warning)
        return WriteResult(answer["ID"], created=True, adopted=False, warnings=warnings)

    def update(self, spec: ServiceSpec) -> WriteResult:
        """Write spec over the service; read it just before; retry once when out of sequence."""
        document = make_service_document(spec, *self._file_ids(spec))
        retried = False
        try:
            state, answer = self._write(spec, document)
        except _OutOfSequence as err:
            log.info("Swarm service %s changed under us (%s); reading it again", spec.name, err)
            retried = True
            try:
                state, answer = self._write(spec, document)
            except _OutOfSequence as again:
                raise ServiceError(
                    spec.name,
                    f"cannot update Swarm service {spec.name}: it changed again while deployer "
                    f"wrote it ({again}); is another tool updating it? Try again",
                ) from again
        warnings = _warnings(answer)
        for warning in warnings:
            log.warning("updating Swarm service %s: the engine warns: %s", spec.name, warning)
        return WriteResult(
            state.id,
            created=False,
            adopted=state.instance != spec.instance,
            warnings=warnings,
            retried=retried,
        )

    def _write(self, spec: ServiceSpec, document: dict[str, Any]) -> tuple[ServiceState, Any]:
        """Read the service (its version is the lock), then write the whole document."""
        current = self._inspect(spec.name)
        if current is None:
            raise ServiceError(spec.name, f"Swarm service {spec.name} no longer exists")
        state = parse_service(current)
        _refuse_other_instance(spec, state)
        with (
            self._registry_auth(spec.image),
            engine_errors(spec.name, f"update Swarm service {spec.name}"),
        ):
            answer = self.client.api.update_service(state.id, state.version, **document)
        return state, answer

    def rollback(self, name: str) -> None:
        """Ask Swarm to roll the service back to its previous spec (server-side, as `docker
        service rollback`: with the rollback config's pace). The SDK has no call for it."""
        current = self._inspect(name)
        if current is None:
            raise ServiceError(name, f"Swarm service {name} no longer exists")
        api = self.client.api
        url = f"{api.base_url}/v{api.api_version}/services/{current['ID']}/update"
        version = (current.get("Version") or {}).get("Index", 0)
        with engine_errors(name, f"roll Swarm service {name} back"):
            answer = api.post(
                url, params={"version": version, "rollback": "previous"}, json=current["Spec"]
            )
            answer.raise_for_status()

    def node_addresses(self) -> list[str]:
        """Addresses of the swarm's nodes that take tasks (ready and active), sorted."""
        with engine_errors("swarm", "list the swarm's nodes"):
            nodes: list[dict[str, Any]] = self.client.api.nodes()
        return sorted(
            {
                node_address(node)
                for node in nodes
                if (node.get("Status") or {}).get("State") == "ready"
                and (node.get("Spec") or {}).get("Availability", "active") == "active"
            }
            - {""}
        )

    @contextmanager
    def _registry_auth(self, image: str) -> Iterator[None]:
        """Make the SDK send exactly `credentials(image)` as X-Registry-Auth for one write.

        docker-py takes a write's registry credentials from the client's auth configs (its
        create_service/update_service have no parameter for them); writes are serialised here
        so two services never send each other's.
        """
        credentials = self._registry.credentials(image)
        registry = registry_of(image)
        auths = {registry: dict(credentials.auth)} if credentials.auth else {}
        api = self.client.api
        with self._writing:
            saved = api._auth_configs  # where docker-py keeps them (private)
            # An empty config would make docker-py read ~/.docker again: keep one entry.
            api._auth_configs = docker.auth.AuthConfig({"auths": auths or {registry: {}}})
            try:
                yield
            finally:
                api._auth_configs = saved

    def tasks(self, service: str) -> list[TaskInfo]:
        """Every task Swarm still keeps for the service (name or id), current and history."""
        with engine_errors(service, f"list the tasks of Swarm service {service}"):
            found: list[dict[str, Any]] = self.client.api.tasks(filters={"service": service})
            if any(task.get("NodeID") not in self._hostnames for task in found):
                nodes = self.client.api.nodes()
                self._hostnames = {
                    node["ID"]: (node.get("Description") or {}).get("Hostname", node["ID"])
                    for node in nodes
                }
                self._addresses = {node["ID"]: node_address(node) for node in nodes}
        return [parse_task(task, self._hostnames, self._addresses) for task in found]

    def task_logs(self, task: TaskInfo, tail: int = 20) -> str:
        """The task's last output lines (and its HEALTHCHECK's last probe), or why not."""
        try:
            lines = self._service_log_lines(task, tail)
            if not lines and task.container_id:
                lines = self._container_log_lines(task.container_id, tail)
            health = self._health(task.container_id) if task.container_id else ""
        except ENGINE_ERRORS as err:
            return f"(logs unavailable: {_why(err)})"
        text = "\n".join(lines) if lines else "(no output)"
        return f"{text}\n{health}" if health else text

    def list_managed(self, instance: str) -> list[ServiceState]:
        """Every service labelled deployer.instance=instance."""
        with engine_errors(instance, f"list the Swarm services of instance {instance}"):
            found = self.client.api.services(filters={"label": f"{LABEL_INSTANCE}={instance}"})
        return [parse_service(attrs) for attrs in found]

    def remove(self, name: str) -> None:
        """Remove the service and its tasks; gone already is fine."""
        state = self.service(name)
        if state is None:
            return
        with engine_errors(name, f"remove Swarm service {name}"):
            try:
                self.client.api.remove_service(state.id)
            except docker.errors.NotFound:
                return

    def _inspect(self, name: str) -> dict[str, Any] | None:
        with engine_errors(name, f"read Swarm service {name}"):
            try:
                attrs: dict[str, Any] = self.client.api.inspect_service(name)
            except docker.errors.NotFound:
                return None
        # The engine also matches an id prefix: a service named `name` or with that id only.
        if name not in (attrs.get("ID"), (attrs.get("Spec") or {}).get("Name")):
            return None
        return attrs

    def _file_ids(self, spec: ServiceSpec) -> tuple[dict[str, str], dict[str, str]]:
        """Secret and config ids by name (the API wants both); missing ones are an error."""
        secrets = self._ids("secret", spec.name, spec.secrets, self.client.api.secrets)
        configs = self._ids("config", spec.name, spec.configs, self.client.api.configs)
        return secrets, configs

    def _ids(
        self,
        kind: str,
        service: str,
        refs: tuple[FileReference, ...],
        listing: Callable[..., list[dict[str, Any]]],
    ) -> dict[str, str]:
        if not refs:
            return {}
        names = sorted({ref.name for ref in refs})
        with engine_errors(service, f"look up the {kind}s of Swarm service {service}"):
            # The engine's name filter also matches prefixes: keep exact names only.
            found = {item["Spec"]["Name"]: item["ID"] for item in listing(filters={"name": names})}
        missing = [name for name in names if name not in found]
        if missing:
            raise ServiceError(
                service,
                f"Swarm service {service} needs {kind}(s) {', '.join(missing)}, which the swarm "
                f"does not have; create them first (docker {kind} create NAME FILE)",
            )
        return {name: found[name] for name in names}

    def _service_log_lines(self, task: TaskInfo, tail: int) -> list[str]:
        # Service logs reach tasks on every node; `details` prefixes each line with its task.
        raw = self.client.api.service_logs(
            task.service_id, stdout=True, stderr=True, details=True, tail=tail, is_tty=False
        )
        lines = []
        for chunk in raw:
            for line in chunk.decode(errors="replace").splitlines():
                details, _, message = line.partition(" ")
                if f"{TASK_LABEL}{task.id}" in details.split(","):
                    lines.append(message)
        return lines[-tail:]

    def _container_log_lines(self, container_id: str, tail: int) -> list[str]:
        try:
            raw: bytes = self.client.api.logs(container_id, tail=tail)
        except docker.errors.NotFound:  # on another node, or removed with the task
            return []
        return raw.decode(errors="replace").rstrip().splitlines()

    def _health(self, container_id: str) -> str:
        try:
            state = self.client.api.inspect_container(container_id).get("State") or {}
        except docker.errors.NotFound:
            return ""
        health = state.get("Health") or {}
        probes = health.get("Log") or []
        if not probes:
            return ""
        last = probes[-1]
        output = str(last.get("Output", "")).strip() or "(no output)"
        return (
            f"HEALTHCHECK {health.get('Status', '?')}; last probe exited "
            f"{last.get('ExitCode')}: {output}"
        )


def _refuse_other_instance(spec: ServiceSpec, state: ServiceState) -> None:
    if state.instance and state.instance != spec.instance:
        raise ServiceError(
            spec.name,
            f"Swarm service {spec.name} belongs to deployer instance {state.instance!r} "
            f"(label {LABEL_INSTANCE}), not {spec.instance!r}; refusing to take it over. "
            f"Remove the label to let this instance adopt it, or change `instance`",
        )


def _warnings(answer: dict[str, Any] | None) -> tuple[str, ...]:
    return tuple((answer or {}).get("Warnings") or ())


def _why(err: Exception) -> str:
    explanation = getattr(err, "explanation", None)
    return str(explanation or err).strip()


def _explain(err: Exception) -> str:
    why = _why(err)
    if "not a swarm manager" in why or "not part of a swarm" in why:
        return (
            f"{why} (deployer's Swarm backend talks to a manager: run `docker swarm init` "
            f"on this engine, or point DOCKER_HOST at a manager node)"
        )
    return why
