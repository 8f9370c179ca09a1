"""Pure translation between deployer's Swarm types and the Engine API's JSON documents.

`make_service_document` builds the whole service spec (deployer never merges with what the
engine has: every write states everything, so a field removed from the config is removed from
the service); `parse_service` and `parse_task` read what the engine answers. No `docker`
import and no I/O: tested by equality and against recorded engine answers
(tests/payloads/swarm/).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from deployer.backends.base import LABEL_DIGEST, LABEL_SERVICE
from deployer.backends.swarm_types import (
    FileReference,
    HealthCheck,
    Resources,
    ServiceSpec,
    ServiceState,
    TaskInfo,
    UpdatePolicy,
    UpdateState,
    parse_port,
)

NANOSECONDS = 1_000_000_000
ENGINE_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")
Document = dict[str, Any]


def nanoseconds(seconds: float) -> int:
    """Engine API durations are integer nanoseconds."""
    return round(seconds * NANOSECONDS)


def make_service_document(
    spec: ServiceSpec, secret_ids: Mapping[str, str], config_ids: Mapping[str, str]
) -> Document:
    """Keyword arguments for the SDK's create_service/update_service: the complete spec."""
    return {
        "name": spec.name,
        "labels": spec.service_labels,
        "task_template": make_task_template(spec, secret_ids, config_ids),
        "mode": {"Replicated": {"Replicas": spec.replicas}},
        "update_config": make_update_config(spec.update),
        "rollback_config": make_rollback_config(spec.update),
        "endpoint_spec": make_endpoint_spec(spec),
    }


def make_endpoint_spec(spec: ServiceSpec) -> Document | None:
    """EndpointSpec: ingress publishes the target port on every node; dns is DNS round-robin
    (no virtual IP, no published port); host networking has none."""
    if spec.publish == "ingress":
        port = {
            "Protocol": "tcp",
            "TargetPort": spec.target_port,
            "PublishedPort": spec.published_port,
            "PublishMode": "ingress",
        }
        return {"Mode": "vip", "Ports": [port]}
    if spec.publish == "dns":
        return {"Mode": "dnsrr"}
    return None


def make_task_template(
    spec: ServiceSpec, secret_ids: Mapping[str, str], config_ids: Mapping[str, str]
) -> Document:
    """TaskTemplate: the container, its resources, placement, restart policy and network."""
    template: Document = {
        "ContainerSpec": make_container_spec(spec, secret_ids, config_ids),
        "RestartPolicy": {
            "Condition": "any",
            "Delay": nanoseconds(spec.restart_delay),
            "MaxAttempts": 0,
        },
        "Networks": [{"Target": spec.network}] if spec.network else [],
        "ForceUpdate": spec.force_update,
    }
    if spec.log_driver is not None:
        template["LogDriver"] = {"Name": spec.log_driver, "Options": dict(spec.log_options)}
    resources = make_resources(spec.resources)
    if resources:
        template["Resources"] = resources
    if spec.constraints:
        template["Placement"] = {"Constraints": list(spec.constraints)}
    return template


def make_container_spec(
    spec: ServiceSpec, secret_ids: Mapping[str, str], config_ids: Mapping[str, str]
) -> Document:
    """ContainerSpec: pinned image, environment, labels, command, files, health, stop."""
    container: Document = {
        "Image": spec.reference,
        "Env": [f"{key}={value}" for key, value in spec.environment.items()],
        # No deployer.instance here: containers with that label belong to the container
        # backend (adoption lists them), task containers belong to their service.
        "Labels": {LABEL_SERVICE: spec.name, LABEL_DIGEST: spec.digest},
        "StopGracePeriod": nanoseconds(spec.stop_grace_period),
    }
    if spec.command is not None:
        container["Command"] = list(spec.command)
    if spec.args is not None:
        container["Args"] = list(spec.args)
    for key, value in (("User", spec.user), ("Dir", spec.working_dir)):
        if value is not None:
            container[key] = value
    if spec.stop_signal is not None:
        container["StopSignal"] = spec.stop_signal
    if spec.mounts:
        container["Mounts"] = [
            {"Type": m.kind, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
            for m in spec.mounts
        ]
    if spec.hosts:
        container["Hosts"] = list(spec.hosts)
    if spec.secrets:
        container["Secrets"] = [
            {"SecretID": secret_ids[ref.name], "SecretName": ref.name, "File": _file(ref)}
            for ref in spec.secrets
        ]
    if spec.configs:
        container["Configs"] = [
            {"ConfigID": config_ids[ref.name], "ConfigName": ref.name, "File": _file(ref)}
            for ref in spec.configs
        ]
    if spec.healthcheck is not None:
        container["Healthcheck"] = make_healthcheck(spec.healthcheck)
    return container


def make_update_config(policy: UpdatePolicy) -> Document:
    """UpdateConfig, every field explicit (the SDK's defaults are parallelism 0, continue)."""
    return {
        "Parallelism": policy.parallelism,
        "Delay": nanoseconds(policy.delay),
        "FailureAction": "rollback",
        "Monitor": nanoseconds(policy.monitor),
        "MaxFailureRatio": policy.max_failure_ratio,
        "Order": "start-first",
    }


def make_rollback_config(policy: UpdatePolicy) -> Document:
    """RollbackConfig: same pace and watch; a failing rollback pauses (a human decides)."""
    return {**make_update_config(policy), "FailureAction": "pause"}


def make_resources(resources: Resources) -> Document:
    """Resources: limits and reservations; CPUs become NanoCPUs."""
    document: Document = {}
    for key, cpus, memory in (
        ("Limits", resources.cpus_limit, resources.memory_limit),
        ("Reservations", resources.cpus_reservation, resources.memory_reservation),
    ):
        part: Document = {}
        if cpus is not None:
            part["NanoCPUs"] = nanoseconds(cpus)
        if memory is not None:
            part["MemoryBytes"] = memory
        if part:
            document[key] = part
    return document


def make_healthcheck(check: HealthCheck) -> Document:
    """Healthcheck with nanosecond durations."""
    return {
        "Test": list(check.test),
        "Interval": nanoseconds(check.interval),
        "Timeout": nanoseconds(check.timeout),
        "Retries": check.retries,
        "StartPeriod": nanoseconds(check.start_period),
    }


def _file(ref: FileReference) -> Document:
    return {"Name": ref.file_name, "UID": "0", "GID": "0", "Mode": ref.mode}


def parse_service(attrs: Mapping[str, Any]) -> ServiceState:
    """A ServiceState from the engine's service inspect JSON."""
    spec: Mapping[str, Any] = attrs.get("Spec") or {}
    previous: Mapping[str, Any] = attrs.get("PreviousSpec") or {}
    update: Mapping[str, Any] = attrs.get("UpdateStatus") or {}
    image = _image(spec)
    previous_image = _image(previous) or None
    replicated = (spec.get("Mode") or {}).get("Replicated")
    state = update.get("State")
    return ServiceState(
        id=attrs.get("ID", ""),
        name=spec.get("Name", ""),
        version=int((attrs.get("Version") or {}).get("Index", 0)),
        labels=dict(spec.get("Labels") or {}),
        image=image,
        digest=digest_of(image),
        port=_port(spec),
        replicas=int(replicated.get("Replicas", 0)) if replicated is not None else None,
        update_state=_update_state(state),
        update_message=update.get("Message", "") or "",
        update_started_at=parse_engine_time(update.get("StartedAt")),
        update_completed_at=parse_engine_time(update.get("CompletedAt")),
        previous_image=previous_image,
        previous_digest=digest_of(previous_image or ""),
        previous_port=_port(previous) if previous else None,
        created_at=parse_engine_time(attrs.get("CreatedAt")),
        updated_at=parse_engine_time(attrs.get("UpdatedAt")),
        force_update=int((spec.get("TaskTemplate") or {}).get("ForceUpdate") or 0),
    )


def parse_task(
    attrs: Mapping[str, Any],
    hostnames: Mapping[str, str],
    addresses: Mapping[str, str] | None = None,
) -> TaskInfo:
    """A TaskInfo from one entry of the engine's task list; hostnames and addresses map node
    id -> hostname and node id -> address (node_address)."""
    status: Mapping[str, Any] = attrs.get("Status") or {}
    container: Mapping[str, Any] = status.get("ContainerStatus") or {}
    container_spec = (attrs.get("Spec") or {}).get("ContainerSpec") or {}
    image = container_spec.get("Image", "")
    node_id = attrs.get("NodeID", "") or ""
    state = status.get("State", "")
    exit_code = container.get("ExitCode")
    slot = attrs.get("Slot")
    return TaskInfo(
        id=attrs.get("ID", ""),
        service_id=attrs.get("ServiceID", ""),
        slot=int(slot) if slot is not None else None,
        node_id=node_id,
        node=hostnames.get(node_id, node_id),
        desired_state=attrs.get("DesiredState", ""),
        state=state,
        message=status.get("Message", "") or "",
        error=status.get("Err", "") or "",
        exit_code=int(exit_code) if exit_code is not None and state != "running" else None,
        image=image,
        digest=digest_of(image),
        port=_env_port(container_spec, int(slot) if slot is not None else None),
        container_id=container.get("ContainerID", "") or "",
        created_at=parse_engine_time(attrs.get("CreatedAt")),
        state_since=parse_engine_time(status.get("Timestamp")),
        node_address=(addresses or {}).get(node_id, ""),
    )


def node_address(node: Mapping[str, Any]) -> str:
    """Where a node's host-published tasks listen: a manager's advertised address (the host
    part of ManagerStatus.Addr), else Status.Addr. A manager's Status.Addr can be 0.0.0.0 (a
    leader that did not create the swarm, moby/moby#35437); a worker's is the source address
    of its connection to the managers. An IPv6 address comes in brackets, ready for host:port."""
    manager: str = (node.get("ManagerStatus") or {}).get("Addr", "")
    host = manager.rsplit(":", 1)[0] if manager else (node.get("Status") or {}).get("Addr", "")
    if host in ("", "0.0.0.0", "::", "[::]"):
        return ""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def digest_of(image: str) -> str | None:
    """The sha256 digest an image reference pins (`repo[:tag]@sha256:...`), else None."""
    _, at, digest = image.partition("@")
    return digest if at and digest.startswith("sha256:") else None


def parse_engine_time(value: str | None) -> datetime | None:
    """The engine's RFC 3339 time (nanoseconds, `Z`) as aware UTC; None for unset/zero."""
    if not value or value.startswith("0001-"):
        return None
    match = ENGINE_TIME.match(value.strip())
    if match is None:
        return None
    head, fraction, zone = match.groups()
    # Python takes at most microseconds; the engine prints nanoseconds.
    micro = (fraction or "0")[:6].ljust(6, "0")
    offset = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(f"{head}.{micro}{offset}").astimezone(UTC)


def _update_state(value: Any) -> UpdateState | None:
    try:
        return UpdateState(value) if value else None
    except ValueError:  # a state newer than this code: judged from the tasks alone
        return None


def _image(spec: Mapping[str, Any]) -> str:
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    image: str = container.get("Image", "") or ""
    return image


def _port(spec: Mapping[str, Any]) -> int | None:
    return _env_port((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {})


def _env_port(container: Mapping[str, Any], slot: int | None = None) -> int | None:
    """$PORT: a port, a slot block's base (no slot) or the slot's port."""
    for item in container.get("Env") or []:
        key, _, value = str(item).partition("=")
        if key == "PORT":
            return parse_port(value, slot)
    return None
