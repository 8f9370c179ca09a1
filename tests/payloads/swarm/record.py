"""Record real Swarm update sequences as JSON fixtures for the converge judge's unit tests.

    .venv/bin/python tests/payloads/swarm/record.py [SCENARIO ...]

Needs the sandbox engine (python -m deployer.sandbox engine); starts a private registry,
builds the busybox test images, makes the engine a single-node swarm if it is not one (and
leaves it afterwards only then), and for each scenario writes the service through
deployer's SwarmBackend (the production path), then polls `docker service inspect` and
`docker inspect` of its tasks every 0.2 s. An observation is kept when Swarm's state, the
spec version or a task's state changed, and at least every second. Each fixture holds the raw
engine JSON (minus the tasks' NetworksAttachments, which deployer never reads), the target
digest, the monitor window and `since` (UTC just before the write).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployer.backends.swarm import SwarmBackend
from deployer.backends.swarm_types import ServiceSpec, UpdatePolicy
from deployer.rollout.port_rotation import next_port, ports_in_use
from deployer.sandbox import AppBehaviour, ImageFactory, LocalRegistry
from deployer.sandbox.images import PushedImage
from deployer.sandbox.net import free_port
from deployer.sandbox.swarm import ensure_swarm, leave_swarm, remove_instance_objects

HERE = Path(__file__).parent
MONITOR = 1.0
POLICY = UpdatePolicy(parallelism=1, delay=0.2, monitor=MONITOR)
Json = dict[str, Any]


@dataclass
class Bed:
    """What every scenario uses: images, the backend, the instance label, port pools."""

    images: dict[str, PushedImage]
    backend: SwarmBackend
    instance: str
    pools: dict[str, list[int]] = field(default_factory=dict)

    def spec(
        self, name: str, image: str, replicas: int = 1, port: int | None = None
    ) -> ServiceSpec:
        """A spec for service `name` on the next port of its pool (or on `port`)."""
        pushed = self.images[image]
        full_name = f"{self.instance}-{name}"
        return ServiceSpec(
            name=full_name,
            image=pushed.repository,
            digest=pushed.digest,
            instance=self.instance,
            replicas=replicas,
            port=port or self.next_port(full_name),
            update=POLICY,
            restart_delay=0.5,
            stop_grace_period=2.0,
        )

    def next_port(self, name: str) -> int:
        pool = self.pools.setdefault(name, [free_port() for _ in range(3)])
        state = self.backend.service(name)
        tasks = self.backend.tasks(state.id) if state else []
        port = next_port(pool, state.port if state else None, ports_in_use(tasks))
        assert port is not None, f"no free port for {name} in {pool}"
        return port


def wait_quiet(name: str, limit: float = 15.0) -> None:
    """Wait until every task Swarm told to stop has stopped (they linger ~2 s on their port)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        tasks = observe(name)["tasks"]
        lingering = [
            task
            for task in tasks
            if task["DesiredState"] != "running"
            and task["Status"]["State"] in ("starting", "running", "ready", "preparing")
        ]
        if not lingering:
            return
        time.sleep(0.2)


def docker_json(*args: str) -> Any:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def observe(name: str) -> Json:
    """One observation; again when a task vanished between listing and inspecting it."""
    for _ in range(5):
        try:
            return observe_once(name)
        except subprocess.CalledProcessError:
            time.sleep(0.05)
    return observe_once(name)


def observe_once(name: str) -> Json:
    service = docker_json("service", "inspect", name)[0]
    listing = subprocess.run(
        ["docker", "service", "ps", "-q", "--no-trunc", name],
        capture_output=True,
        text=True,
        check=True,
    )
    ids = listing.stdout.split()
    tasks = docker_json("inspect", "--type", "task", *ids) if ids else []
    for task in tasks:
        task.pop("NetworksAttachments", None)
    nodes = {
        node["ID"]: node["Description"]["Hostname"]
        for node in docker_json("node", "inspect", "self")
    }
    return {"service": service, "tasks": tasks, "nodes": nodes}


def fingerprint(seen: Json) -> str:
    service = seen["service"]
    tasks = sorted((t["ID"], t["Status"]["State"], t["DesiredState"]) for t in seen["tasks"])
    return json.dumps([service.get("UpdateStatus"), service["Version"], tasks])


def record(
    name: str, until: Callable[[Json, float], bool], limit: float, action: Callable[[float], None]
) -> list[Json]:
    """Poll until until(observation, seconds) or limit; action(seconds) runs before each poll."""
    observations: list[Json] = []
    started = time.monotonic()
    last_key, last_at = "", -10.0
    while True:
        at = time.monotonic() - started
        action(at)
        seen = observe(name)
        key = fingerprint(seen)
        if key != last_key or at - last_at >= 1.0:
            observations.append({"at": round(at, 3), **seen})
            last_key, last_at = key, at
        if until(seen, at) or at > limit:
            if observations[-1]["at"] != round(at, 3):
                observations.append({"at": round(at, 3), **seen})
            return observations
        time.sleep(0.2)


def update_state(seen: Json) -> str | None:
    state: str | None = (seen["service"].get("UpdateStatus") or {}).get("State")
    return state


def settled_after(states: Collection[str], extra: float) -> Callable[[Json, float], bool]:
    """Stop `extra` seconds after the update state first reached one of `states`."""
    first: list[float] = []

    def until(seen: Json, at: float) -> bool:
        if update_state(seen) in states and not first:
            first.append(at)
        return bool(first) and at - first[0] >= extra

    return until


def all_running(replicas: int, extra: float) -> Callable[[Json, float], bool]:
    """Stop `extra` seconds after `replicas` tasks desired running all ran."""
    first: list[float] = []

    def until(seen: Json, at: float) -> bool:
        current = [t for t in seen["tasks"] if t["DesiredState"] == "running"]
        running = [t for t in current if t["Status"]["State"] == "running"]
        if len(running) == len(current) == replicas and not first:
            first.append(at)
        return bool(first) and at - first[0] >= extra

    return until


def nothing(at: float) -> None:
    return None


def save(
    scenario: str, spec: ServiceSpec, since: datetime, observations: list[Json], **extra: Any
) -> None:
    version = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
    ).stdout.strip()
    document = {
        "scenario": scenario,
        "engine": version,
        "target": spec.digest,
        "window": MONITOR,
        "since": since.isoformat(),
        **extra,
        "observations": observations,
    }
    path = HERE / f"{scenario}.json"
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"{scenario}: {len(observations)} observations, {observations[-1]['at']:.1f} s -> {path}")


def write(bed: Bed, spec: ServiceSpec) -> datetime:
    if bed.backend.service(spec.name) is not None:
        wait_quiet(spec.name)
    since = datetime.now(UTC)
    bed.backend.apply(spec)
    return since


ROLLED_BACK = ("rollback_completed", "rollback_paused")


def scenario_create(bed: Bed) -> None:
    spec = bed.spec("web", "v1")
    since = write(bed, spec)
    observations = record(spec.name, all_running(1, MONITOR + 1.0), 20, nothing)
    save("create_no_update_status", spec, since, observations)


def scenario_update(bed: Bed) -> None:
    spec = bed.spec("web", "v2")
    since = write(bed, spec)
    until = settled_after({"completed"}, MONITOR + 1.0)
    save("update_start_first_success", spec, since, record(spec.name, until, 20, nothing))


def scenario_exit(bed: Bed) -> None:
    spec = bed.spec("web", "exit")
    since = write(bed, spec)
    until = settled_after(ROLLED_BACK, 0.5)
    save("update_exits_rolled_back", spec, since, record(spec.name, until, 30, nothing))


def scenario_cli_port_bind(bed: Bed) -> None:
    """`docker service update` to a release on the port the running one holds: CLI says ok."""
    name = f"{bed.instance}-web"
    wait_quiet(name)
    state = bed.backend.service(name)
    assert state is not None
    assert state.port is not None
    spec = bed.spec("web", "v1", port=state.port)
    since = datetime.now(UTC)
    argv = ["docker", "service", "update", "--detach=false", "--image", spec.reference, name]
    cli = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    until = settled_after(ROLLED_BACK, 0.5)

    def until_cli_done(seen: Json, at: float) -> bool:
        return until(seen, at) and cli.poll() is not None

    observations = record(name, until_cli_done, 30, nothing)
    output = cli.communicate()[0].strip().splitlines()
    cli_result = {
        "argv": "docker service update --detach=false --image IMAGE@DIGEST SERVICE",
        "returncode": cli.returncode,
        "last_line": output[-1] if output else "",
    }
    save("cli_port_bind_rolled_back", spec, since, observations, cli=cli_result)


def scenario_unhealthy(bed: Bed) -> None:
    spec = bed.spec("web", "unhealthy")
    since = write(bed, spec)
    until = settled_after(ROLLED_BACK, 0.5)
    save("update_unhealthy_rolled_back", spec, since, record(spec.name, until, 40, nothing))


def scenario_paused(bed: Bed) -> None:
    """An update with failure action `pause` (not deployer's choice: an operator's CLI run)."""
    name = f"{bed.instance}-web"
    wait_quiet(name)
    spec = bed.spec("web", "exit")
    since = datetime.now(UTC)
    argv = ["service", "update", "--detach", "--update-failure-action", "pause"]
    argv += ["--env-add", f"PORT={spec.port}", "--image", spec.reference, name]
    subprocess.run(["docker", *argv], capture_output=True, check=True)
    save("update_paused", spec, since, record(name, settled_after({"paused"}, 0.5), 30, nothing))
    bed.backend.remove(name)


def scenario_flap(bed: Bed) -> None:
    """A release Swarm completed, then its task dies (docker kill) and Swarm restarts it."""
    first = bed.spec("flap", "v1")
    write(bed, first)
    record(first.name, all_running(1, 0.5), 20, nothing)
    spec = bed.spec("flap", "v2")
    since = write(bed, spec)
    killed: list[str] = []

    def kill_after_completed(at: float) -> None:
        seen = observe(spec.name)
        if killed or update_state(seen) != "completed":
            return
        running = [
            task
            for task in seen["tasks"]
            if task["DesiredState"] == "running" and task["Status"]["State"] == "running"
        ]
        if running:
            container = running[0]["Status"]["ContainerStatus"]["ContainerID"]
            subprocess.run(["docker", "kill", container], capture_output=True, check=False)
            killed.append(container)

    restarted = all_running(1, 0.5)

    def until(seen: Json, at: float) -> bool:
        failed = any(task["Status"]["State"] == "failed" for task in seen["tasks"])
        return bool(killed) and failed and restarted(seen, at)

    save("flap_after_completed", spec, since, record(spec.name, until, 30, kill_after_completed))
    bed.backend.remove(spec.name)


def scenario_replicas(bed: Bed) -> None:
    first = bed.spec("pair", "silent1", replicas=2)
    write(bed, first)
    record(first.name, all_running(2, 0.5), 20, nothing)
    spec = bed.spec("pair", "silent2", replicas=2)
    since = write(bed, spec)
    until = settled_after({"completed"}, MONITOR + 1.0)
    save("replicas2_start_first_success", spec, since, record(spec.name, until, 30, nothing))
    # Both replicas on one node and one port: the second new task cannot bind it.
    spec = bed.spec("pair", "v2", replicas=2)
    since = write(bed, spec)
    until = settled_after(ROLLED_BACK, 0.5)
    save("replicas2_second_task_cannot_bind", spec, since, record(spec.name, until, 30, nothing))
    bed.backend.remove(spec.name)


def scenario_create_exit(bed: Bed) -> None:
    spec = bed.spec("crash", "exit")
    since = write(bed, spec)

    def until(seen: Json, at: float) -> bool:
        failed = [task for task in seen["tasks"] if task["Status"]["State"] == "failed"]
        return len(failed) >= 2

    save("create_crash_loop", spec, since, record(spec.name, until, 20, nothing))
    bed.backend.remove(spec.name)


SCENARIOS: dict[str, Callable[[Bed], None]] = {
    "create": scenario_create,
    "update": scenario_update,
    "exit": scenario_exit,
    "cli": scenario_cli_port_bind,
    "unhealthy": scenario_unhealthy,
    "paused": scenario_paused,
    "flap": scenario_flap,
    "replicas": scenario_replicas,
    "crash": scenario_create_exit,
}


def build_images(factory: ImageFactory) -> dict[str, PushedImage]:
    """Releases with a HEALTHCHECK (`running` then means healthy), and two silent ones."""
    return {
        "v1": factory.build("app", "v1", healthcheck=True),
        "v2": factory.build("app", "v2", healthcheck=True),
        "exit": factory.build("app", "v3", AppBehaviour.EXIT, healthcheck=True),
        "unhealthy": factory.build("app", "v4", AppBehaviour.SILENT, healthcheck=True),
        "silent1": factory.build("app", "s1", AppBehaviour.SILENT),
        "silent2": factory.build("app", "s2", AppBehaviour.SILENT),
    }


def main(names: list[str]) -> int:
    chosen = names or list(SCENARIOS)
    join = ensure_swarm()
    instance = f"rec-{uuid.uuid4().hex[:6]}"
    try:
        with (
            tempfile.TemporaryDirectory() as workdir,
            LocalRegistry(Path(workdir) / "registry") as registry,
        ):
            factory = ImageFactory(registry.address, "rec", Path(workdir) / "images")
            bed = Bed(build_images(factory), SwarmBackend(), instance)
            try:
                for name in chosen:
                    SCENARIOS[name](bed)
            finally:
                remove_instance_objects(instance)  # before the registry goes: its images can
    finally:
        remove_instance_objects(instance)
        leave_swarm(join)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
