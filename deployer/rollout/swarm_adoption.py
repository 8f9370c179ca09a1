"""At start: what serves each Swarm service, and what becomes of its unfinished deployments.

Nothing is written to a Swarm service at start. Per Swarm service:

| found at start                          | after the restart                                  |
| --------------------------------------- | -------------------------------------------------- |
| no deployment running                   | nginx lists the tasks Swarm wants running (host    |
|                                         | publishing), or the fixed ingress/dns addresses    |
| a deployment running whose write        | resumed: nginx also lists every task still alive   |
| reached Swarm (the service carries its  | and the release's port (max_fails=0); its converge |
| deployment label, or Swarm is rolling   | step re-attaches and records the true outcome      |
| back an update begun after its update   | (a rollback Swarm did meanwhile: failed, with why) |
| step began)                             |                                                    |
| a deployment running whose write never  | `failed: interrupted at <step>`; the service was   |
| reached Swarm                           | not changed and serves on                          |

A service the engine cannot read stops the start with the engine's error (as for
containers): nginx keeps its running config until deployer can see what serves.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from deployer.backends.base import LABEL_DEPLOYMENT
from deployer.backends.swarm_types import ServiceState, TaskInfo
from deployer.config import ServiceConfig
from deployer.fleet import Member
from deployer.models import Deployment, DeploymentState, utc_now
from deployer.rollout.adoption import mark_interrupted_step
from deployer.rollout.swarm import SwarmStrategy
from deployer.rollout.swarm_plan import serving_endpoints, switching_endpoints
from deployer.store import Store

log = logging.getLogger(__name__)
CLOCK_SLACK = timedelta(seconds=1)  # deployer's and the manager's clocks (one host, or NTP)


def adopt_services(strategy: SwarmStrategy, store: Store) -> tuple[list[str], list[Deployment]]:
    """Adopt every Swarm service into the fleet (nginx is reloaded by the caller) and settle
    unfinished deployments; one line per service, and the deployments to resume."""
    report, resumed = [], []
    running = store.in_state(DeploymentState.RUNNING)
    for name, service in strategy.config.services.items():
        if service.engine != "swarm":
            continue
        state, tasks = strategy.read(name)
        records = [record for record in running if record.service == name]
        resuming = next((record for record in records if landed(record, state)), None)
        for record in records:
            if record is not resuming:
                _close_interrupted(store, record, state)
        members = _members(strategy, name, service, state, tasks, resuming)
        strategy.fleet.adopt(name, members, state.updated_at or utc_now() if state else utc_now())
        line = _describe(name, state, members)
        if resuming is not None:
            mark_interrupted_step(resuming)
            store.save(resuming)
            resumed.append(resuming)
            line += f"; re-attaching to deployment {resuming.id} (Swarm carried on meanwhile)"
        report.append(line)
    return report, resumed


def landed(record: Deployment, state: ServiceState | None) -> bool:
    """True when the deployment's write reached the service (Swarm may have rolled it back)."""
    update = record.last_step("update")
    if update is None or state is None:
        return False
    if state.labels.get(LABEL_DEPLOYMENT) == record.id:
        return True
    # Swarm's rollback restored the previous spec (and its labels): ours, if it began after
    # this deployment's update step did.
    rolled_back = state.update_state is not None and state.update_state.rolled_back
    began = state.update_started_at
    return rolled_back and began is not None and began >= update.started_at - CLOCK_SLACK


def _members(
    strategy: SwarmStrategy,
    name: str,
    service: ServiceConfig,
    state: ServiceState | None,
    tasks: list[TaskInfo],
    resuming: Deployment | None,
) -> list[Member]:
    if state is None:
        return []
    steady = serving_endpoints(service, name, strategy.mesh_nodes(service), state, tasks)
    if resuming is None or state.port is None or resuming.digest is None:
        return list(steady)
    nodes = strategy.nodes()
    return list(
        switching_endpoints(steady, tasks, nodes, state.port, service.replicas, resuming.digest)
    )


def _close_interrupted(store: Store, record: Deployment, state: ServiceState | None) -> None:
    step = mark_interrupted_step(record)
    record.state = DeploymentState.FAILED
    record.finished_at = utc_now()
    serves = (
        f"Swarm service {record.service} was not changed and serves {state.digest}"
        if state is not None
        else f"there is no Swarm service {record.service}"
    )
    record.error = (
        f"interrupted at {step}: deployer stopped before its update reached Swarm; {serves}; "
        f"deploy again with `deployer deploy {record.service}`"
    )
    store.save(record)
    log.warning("deployment %s of %s %s", record.id, record.service, record.error)


def _describe(name: str, state: ServiceState | None, members: list[Member]) -> str:
    if state is None:
        return f"{name}: no Swarm service yet (the first deployment creates it)"
    addresses = ", ".join(member.address for member in members) or "no task yet"
    return f"{name}: adopted Swarm service {state.name} ({state.digest}) on {addresses}"
