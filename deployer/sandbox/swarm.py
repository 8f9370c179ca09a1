"""A single-node Swarm on the sandbox engine, for tests and recordings, driven by the CLI.

`docker swarm init --advertise-addr 127.0.0.1` when the engine is not in a swarm yet; the
caller leaves it afterwards only if it created it (and nobody else's services run there),
and removes the gateway bridge network that init created.
Tasks use host networking on 127.0.0.1 ports: ingress and overlay networks need iptables,
which the sandbox engine runs without.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass

from deployer.backends.base import LABEL_INSTANCE

GATEWAY_BRIDGE = "docker_gwbridge"


class SwarmUnavailable(RuntimeError):
    """The engine is not in a swarm and could not be made a manager; the message says why."""


def swarm_state() -> str:
    """The node's LocalNodeState: inactive | pending | active | error | locked."""
    result = _docker("info", "--format", "{{json .Swarm.LocalNodeState}}")
    if result.returncode != 0:
        raise SwarmUnavailable(f"docker info failed: {result.stderr.strip()}")
    state: str = json.loads(result.stdout)
    return state


@dataclass(frozen=True)
class SwarmJoin:
    """What ensure_swarm did: whether it created the swarm, and the gateway bridge."""

    created: bool
    had_gateway_bridge: bool


def ensure_swarm() -> SwarmJoin:
    """Make the engine a single-node swarm manager (when it is in none)."""
    had_bridge = network_exists(GATEWAY_BRIDGE)
    if swarm_state() == "active":
        return SwarmJoin(created=False, had_gateway_bridge=had_bridge)
    result = _docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    if result.returncode == 0:
        return SwarmJoin(created=True, had_gateway_bridge=had_bridge)
    if "already part of a swarm" in result.stderr:  # someone else initialised it meanwhile
        return SwarmJoin(created=False, had_gateway_bridge=had_bridge)
    raise SwarmUnavailable(f"docker swarm init failed: {result.stderr.strip()}")


def leave_swarm(join: SwarmJoin) -> None:
    """Leave a swarm ensure_swarm created (removes every service), and its gateway bridge.

    `swarm init` creates the bridge network docker_gwbridge (even with dockerd --bridge=none)
    and `swarm leave` keeps it: remove it when it was not there before.
    """
    if not join.created:
        return
    result = _docker("swarm", "leave", "--force")
    if result.returncode != 0:
        raise SwarmUnavailable(f"docker swarm leave failed: {result.stderr.strip()}")
    if not join.had_gateway_bridge and network_exists(GATEWAY_BRIDGE):
        _docker("network", "rm", GATEWAY_BRIDGE)


def network_exists(name: str) -> bool:
    """True when the engine has a network called name."""
    return _docker("network", "inspect", name).returncode == 0


def service_names(label: str | None = None) -> list[str]:
    """Names of the swarm's services, all or those with `label` (key=value)."""
    argv = ["service", "ls", "--format", "{{.Name}}"]
    if label:
        argv += ["--filter", f"label={label}"]
    result = _docker(*argv)
    return result.stdout.split() if result.returncode == 0 else []


def remove_instance_objects(instance: str) -> None:
    """Remove the services, secrets and configs labelled deployer.instance=instance."""
    label = f"{LABEL_INSTANCE}={instance}"
    names = service_names(label)
    if names:
        _docker("service", "rm", *names)
    for kind in ("secret", "config"):
        listing = _docker(kind, "ls", "-q", "--filter", f"label={label}")
        for object_id in listing.stdout.split() if listing.returncode == 0 else []:
            _remove_when_unused(kind, object_id)


def _remove_when_unused(kind: str, object_id: str, attempts: int = 40) -> None:
    # A secret or config stays in use until the tasks that mount it are gone.
    for _ in range(attempts):
        result = _docker(kind, "rm", object_id)
        if result.returncode == 0 or "not found" in result.stderr:
            return
        time.sleep(0.25)


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
