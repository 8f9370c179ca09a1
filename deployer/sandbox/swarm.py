"""A single-node Swarm on the sandbox engine, for tests and recordings, driven by the CLI.

`docker swarm init --advertise-addr 127.0.0.1` when the engine is not in a swarm yet; the
caller leaves it afterwards only if it created it (and nobody else's services run there).
Tasks use host networking on 127.0.0.1 ports: ingress and overlay networks need iptables,
which the sandbox engine runs without.
"""

from __future__ import annotations

import json
import subprocess
import time

from deployer.backends.base import LABEL_INSTANCE


class SwarmUnavailable(RuntimeError):
    """The engine is not in a swarm and could not be made a manager; the message says why."""


def swarm_state() -> str:
    """The node's LocalNodeState: inactive | pending | active | error | locked."""
    result = _docker("info", "--format", "{{json .Swarm.LocalNodeState}}")
    if result.returncode != 0:
        raise SwarmUnavailable(f"docker info failed: {result.stderr.strip()}")
    state: str = json.loads(result.stdout)
    return state


def ensure_swarm() -> bool:
    """Make the engine a single-node swarm manager; True when this call created the swarm."""
    if swarm_state() == "active":
        return False
    result = _docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    if result.returncode == 0:
        return True
    if "already part of a swarm" in result.stderr:  # someone else initialised it meanwhile
        return False
    raise SwarmUnavailable(f"docker swarm init failed: {result.stderr.strip()}")


def leave_swarm() -> None:
    """docker swarm leave --force (removes every service: only for a swarm we created)."""
    result = _docker("swarm", "leave", "--force")
    if result.returncode != 0:
        raise SwarmUnavailable(f"docker swarm leave failed: {result.stderr.strip()}")


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
