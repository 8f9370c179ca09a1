"""The Swarm strategy: write the service's new spec, let Swarm replace its tasks start-first,
judge the true outcome, then point nginx at what serves.

Steps: resolve -> update -> converge -> nginx.

  resolve   tag -> digest (deployer pins `image@digest` itself); `skipped` when the service
            pins that digest already and every replica runs it.
  update    host publishing: the release gets the pool's next port (a block of ports with
            several replicas), and nginx first lists the old tasks and the new port on every
            node, all `max_fails=0` (a refused connection goes to the next server and nothing
            is marked down); then the whole spec is written: created on the first deployment,
            adopted when a service of that name exists without deployer's labels.
  converge  the judge (rollout/converge.py) on fresh observations: succeeded only when Swarm
            completed, every task runs the digest, and each stayed up for `update.monitor`.
  nginx     the upstream lists the new release's tasks only (ingress and dns: their fixed
            addresses, not reloaded when those did not change).

A failure before the write changed nothing on the engine; nginx gets its old upstream back.
After the write Swarm rolls back by itself (failure_action rollback); when it did not (the
deadline passed, the release died after Swarm's own monitor, the engine answered with an
error after the write landed) deployer asks it to (`docker service rollback`), and a first
deployment's service is removed, so a failed record never leaves the failed release serving.
A stop or a crash after the write never decides the outcome: the deployment stays `running`
and the next start re-attaches to it (deployer/rollout/swarm_adoption.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from deployer.backends.base import LABEL_DEPLOYMENT, LOOPBACK
from deployer.backends.swarm_types import ServiceState, SwarmControl, TaskInfo, UpdateState
from deployer.config import Config, ServiceConfig
from deployer.deploy import Steps
from deployer.errors import (
    DeployerError,
    DeploymentCancelled,
    DockerError,
    FinishLater,
    NoFreePort,
    UpdateFailed,
)
from deployer.fleet import Fleet, Member, Serving
from deployer.logs import container_secrets, redact
from deployer.models import Deployment, DeploymentState, Endpoint, StepState, utc_now
from deployer.nginx import NginxConfigurator
from deployer.rollout.converge import short
from deployer.rollout.environment import read_secret_environment
from deployer.rollout.port_rotation import next_block, next_port, ports_in_use
from deployer.rollout.swarm_plan import make_service_spec, serving_endpoints, switching_endpoints
from deployer.rollout.swarm_status import make_status
from deployer.rollout.swarm_watch import Convergence, Watch, watch
from deployer.swarm_view import SwarmView

log = logging.getLogger(__name__)
SETTLE = 5.0  # seconds to wait for a rollback Swarm began to end, to report how it ended
SETTLED = (None, UpdateState.COMPLETED, UpdateState.ROLLBACK_COMPLETED)  # no update under way
POLL = 0.25  # seconds between two observations while converging
REATTACH_MINIMUM = 30.0  # seconds a re-attached watch gets beyond the monitor window at least


@dataclass
class SwarmStrategy:
    """What every Swarm rollout shares: the engine, nginx, the fleet and the engine's view."""

    config: Config
    engine: SwarmControl
    nginx: NginxConfigurator
    fleet: Fleet
    view: SwarmView
    stopping: threading.Event
    environ: Mapping[str, str]
    poll: float = POLL
    settle: float = SETTLE

    def rollout(self, deployment: Deployment, service: ServiceConfig, steps: Steps) -> SwarmRollout:
        """One deployment of a Swarm service (a deploy.RolloutFactory)."""
        return SwarmRollout(self, deployment, service, steps)

    def nodes(self) -> list[str]:
        """Addresses of the nodes that take tasks (host publishing lists a new port on each)."""
        return self.engine.node_addresses() or [LOOPBACK]

    def mesh_nodes(self, service: ServiceConfig) -> list[str]:
        """Where nginx reaches the routing mesh of an ingress service: the configured `nodes:`
        (required for ingress); nothing for the other modes, whose endpoints are the tasks."""
        return list(self.config.nodes) if service.publish.mode == "ingress" else []

    def follow(self, name: str, state: ServiceState | None, tasks: Sequence[TaskInfo]) -> str:
        """Between deployments: when Swarm moved a settled service's tasks (a node lost, a task
        rescheduled on another node), point nginx at where it serves now (ingress: the
        configured nodes, which do not move); never at nothing (no task running: nginx keeps
        what it had). The caller holds the service's place in the queue. What changed, or ''."""
        service = self.config.services[name]
        if state is None or state.update_state not in SETTLED:
            return ""
        members = serving_endpoints(
            service, name, self.mesh_nodes(service), state, tasks, state.digest
        )
        serving = self.fleet.serving(name)
        current = list(serving.members) if serving is not None else []
        if not members or _addresses(current) == _addresses(members):
            return ""
        self.fleet.switch(name, members, self.nginx.apply)
        was = ", ".join(member.address for member in current) or "nothing"
        now = ", ".join(member.address for member in members)
        return f"{name}: Swarm's tasks moved: nginx now sends it to {now} (was {was})"

    def read(self, name: str) -> tuple[ServiceState | None, list[TaskInfo]]:
        """The service and its tasks, now (and the background view refreshed with them)."""
        state = self.engine.service(name)
        tasks = self.engine.tasks(state.id) if state is not None else []
        self.view.record(name, state, tasks)
        return state, tasks


class SwarmRollout:
    """One deployment of a Swarm service: what it changed so far, so a failure can say it."""

    def __init__(
        self, strategy: SwarmStrategy, deployment: Deployment, service: ServiceConfig, steps: Steps
    ) -> None:
        self.strategy = strategy
        self.deployment = deployment
        self.service = service
        self.step = steps
        self.name = deployment.service
        self.old: Serving | None = strategy.fleet.serving(self.name)
        self.wrote = deployment.last_step("update") is not None  # the write may have landed
        self.created = False  # this deployment created the service (its first)
        self.asked_rollback = False  # deployer asked Swarm to roll back (it may still run)
        self.secrets: list[str] = []

    def run(self) -> DeploymentState:
        """The steps; returns the final state or raises a DeployerError."""
        if self.deployment.steps:  # resumed after a restart: its write reached Swarm
            return self._reattach()
        state, tasks = self.strategy.read(self.name)
        digest = self.resolve(state, tasks)
        if digest is None:
            return DeploymentState.SKIPPED
        since = self.update(digest, state, tasks)
        self.converge(digest, since, self.service.update.timeout)
        self.switch(digest)
        return DeploymentState.SUCCEEDED

    def resolve(self, state: ServiceState | None, tasks: list[TaskInfo]) -> str | None:
        """The digest to deploy, or None when the service runs it on every replica."""
        deployment, service = self.deployment, self.service
        with self.step("resolve") as step:
            if deployment.requested_digest:
                digest = deployment.requested_digest
                step.detail = f"asked for {service.image}@{digest} (no registry lookup)"
            else:
                digest = self.strategy.engine.resolve(service.image, deployment.tag)
                step.detail = f"{service.image}:{deployment.tag} is {digest}"
            deployment.digest = digest
            deployment.previous_digest = state.digest if state is not None else None
            deployment.container = f"Swarm service {self.name}"
            if state is not None and state.digest == digest:
                trouble = _trouble(state, tasks)
                if trouble is None:
                    step.detail += f"; Swarm service {self.name} runs it on every replica"
                    return None
                step.detail += f"; {trouble}: updating it again"
        return digest

    def update(self, digest: str, state: ServiceState | None, tasks: list[TaskInfo]) -> datetime:
        """The update step: nginx lists the new port too, then the spec is written. Returns
        when the write began (the judge counts failed tasks from then)."""
        strategy, service = self.strategy, self.service
        with self.step("update") as step:
            port = self._port(state, tasks)
            environment = read_secret_environment(service, strategy.environ)
            self.secrets = container_secrets(environment.values.values())
            force = state.force_update if state is not None else 0
            if state is not None and state.digest == digest:
                force += 1  # same spec otherwise: make Swarm replace the tasks anyway
            spec = make_service_spec(
                strategy.config,
                self.name,
                service,
                digest,
                self.deployment.id,
                port,
                environment.values,
            )
            spec = replace(spec, force_update=force)
            notes = []
            if port is not None and state is not None:
                notes.append(self._list_new_port(digest, port, tasks))
            since = utc_now()
            self.wrote = True  # from here the write may land whatever the engine answers
            result = strategy.engine.apply(spec)
            self.created = result.created
            verb = "created" if result.created else "adopted" if result.adopted else "updated"
            at = f" on port {port}" if port is not None else ""
            what = f"{verb} Swarm service {self.name}: {spec.reference}{at}"
            notes.insert(0, what + (" (written twice: it changed under us)" * result.retried))
            notes += [f"the engine warns: {warning}" for warning in result.warnings]
            if environment.summary:
                notes.append(environment.summary)
            step.detail = "; ".join(notes)
        return since

    def converge(self, digest: str, since: datetime, timeout: float, resumed: bool = False) -> None:
        """The converge step: watch until the judge decides; a stop leaves it to the next start."""
        strategy, monitor = self.strategy, self.service.update.monitor
        with self.step("converge", cancellable=False) as step:
            target = Watch(
                self.name,
                digest,
                monitor,
                timeout,
                since,
                interval=strategy.poll,
                settle=strategy.settle,
            )
            try:
                result = watch(strategy.engine, target, strategy.stopping)
            except DeploymentCancelled as err:
                step.state = StepState.INTERRUPTED
                step.detail = f"{err}; the next start re-attaches"
                raise FinishLater(str(err)) from None
            finally:
                strategy.view.read(self.name)
            if not result.succeeded:
                raise UpdateFailed(self.name, result.verdict.describe(), self._logs(result))
            again = "re-attached after deployer restarted: " if resumed else ""
            step.detail = f"{again}{result.verdict.reason} ({result.seconds:.1f} s)"

    def switch(self, digest: str) -> None:
        """The nginx step: the upstream lists the new release's tasks only."""
        strategy, name = self.strategy, self.name
        with self.step("nginx", cancellable=False) as step:  # after the write: never undone
            state, tasks = strategy.read(name)
            if state is None:
                raise DockerError(f"Swarm service {name} is gone (removed by someone?)")
            nodes = strategy.mesh_nodes(self.service)
            members = serving_endpoints(self.service, name, nodes, state, tasks, digest)
            addresses = ", ".join(member.address for member in members)
            if self._point_nginx(members):
                step.detail = f"{strategy.nginx.output} now sends {name} to {addresses}"
            else:
                step.detail = f"nginx sends {name} to {addresses} already: not reloaded"

    def undo(self, error: str) -> str:
        """After a failure: what serves, said in the error; nothing left on the failed digest."""
        if not self.wrote:
            return error + self._restore_nginx() + f"; Swarm service {self.name} not changed"
        try:
            error += self._undo_write()
        except DeployerError as err:
            error += f"; could not read or roll back Swarm service {self.name}: {err}"
        return error + self._restore_nginx()

    def _undo_write(self) -> str:
        """The write landed, or may have: leave no task of the failed digest running."""
        engine, name, digest = self.strategy.engine, self.name, self.deployment.digest
        state = engine.service(name)
        ours = state is not None and state.labels.get(LABEL_DEPLOYMENT) == self.deployment.id
        if state is None or not ours or state.digest != digest:
            return ""  # never landed, or Swarm rolled it back, or someone wrote after us
        if state.update_state is not None and state.update_state.rolled_back:
            return ""
        if self.created or state.previous_digest is None:
            engine.remove(name)
            return f"; removed Swarm service {name}, which this first deployment created"
        engine.rollback(name)
        self.asked_rollback = True
        return f"; deployer asked Swarm to roll {name} back to {short(state.previous_digest)}"

    def _restore_nginx(self) -> str:
        """nginx lists what serves now. Settled (Swarm finished its rollback, or nothing was
        written): the tasks running the digest the service pins. Otherwise (a rollback still
        under way, one deployer just asked for): what served before, every task still alive
        and the pinned port on every node, all max_fails=0, until Swarm settles (then
        `follow` lists the pinned digest's tasks)."""
        strategy, name = self.strategy, self.name
        try:
            state, tasks = strategy.read(name)
            members: list[Member] = list(self.old.members) if self.old is not None else []
            if state is not None and state.digest is not None:
                nodes = strategy.nodes()
                running = [t for t in tasks if t.state == "running" and t.digest == state.digest]
                settled = not self.asked_rollback and state.update_state in SETTLED
                if settled and running:
                    mesh = strategy.mesh_nodes(self.service)
                    members = list(
                        serving_endpoints(self.service, name, mesh, state, running, state.digest)
                    )
                elif state.port is not None:
                    members = list(
                        switching_endpoints(
                            [m for m in members if isinstance(m, Endpoint)],
                            tasks,
                            nodes,
                            state.port,
                            self.service.replicas,
                            state.digest,
                        )
                    )
            if not self._point_nginx(members):
                return ""
        except DeployerError as err:
            return f"; nginx could not be set back ({err})"
        return f"; nginx sends {name} to {', '.join(m.address for m in members) or 'nothing'}"

    def _point_nginx(self, members: Sequence[Member]) -> bool:
        """nginx sends the service to members; False when it did already (not reloaded: the
        file would differ only in its digest comments)."""
        fleet = self.strategy.fleet
        current = fleet.serving(self.name)
        if current is not None and _addresses(current.members) == _addresses(members):
            fleet.adopt(self.name, members, utc_now())
            return False
        fleet.switch(self.name, members, self.strategy.nginx.apply)
        return True

    def _list_new_port(self, digest: str, port: int, tasks: list[TaskInfo]) -> str:
        strategy = self.strategy
        current = self.old.endpoints if self.old is not None else ()
        members = switching_endpoints(
            current, tasks, strategy.nodes(), port, self.service.replicas, digest
        )
        strategy.fleet.switch(self.name, members, strategy.nginx.apply)
        return f"nginx sends {self.name} to {', '.join(m.address for m in members)} meanwhile"

    def _port(self, state: ServiceState | None, tasks: list[TaskInfo]) -> int | None:
        """Host publishing: the release's port (or block base), never one a task holds."""
        service = self.service
        if service.publish.mode != "host":
            return None
        assert service.ports is not None  # config: host publishing has a pool
        pool, in_use = list(service.ports), ports_in_use(tasks)
        current = state.port if state is not None else None
        if service.replicas > 1:
            port = next_block(pool, service.replicas, current, in_use)
        else:
            port = next_port(pool, current, in_use)
        if port is None:
            raise NoFreePort(
                self.name,
                f"no free port for Swarm service {self.name} in {service.ports}: its tasks hold "
                f"{sorted(in_use)}; widen `ports` or wait for the old tasks to stop",
            )
        return port

    def _logs(self, result: Convergence) -> str:
        text = "\n".join(
            f"task {failure.task_id[:12]} (slot {failure.slot}, node {failure.node}):\n{lines}"
            for failure, lines in result.logs
        )
        return redact(text, self.secrets)

    def _reattach(self) -> DeploymentState:
        """Resumed after a restart, its write on the engine: judge it, then switch nginx."""
        deployment = self.deployment
        update = deployment.last_step("update")
        if update is None or deployment.digest is None:  # swarm_adoption resumes no other
            raise DeployerError("interrupted before its update reached Swarm; not resumed")
        converged = deployment.last_step("converge")
        if converged is None or converged.state is not StepState.SUCCEEDED:
            elapsed = (utc_now() - update.started_at).total_seconds()
            timeout = max(
                self.service.update.timeout - elapsed,
                self.service.update.monitor + REATTACH_MINIMUM,
            )
            self.converge(deployment.digest, update.started_at, timeout, resumed=True)
        self.switch(deployment.digest)
        return DeploymentState.SUCCEEDED


def _trouble(state: ServiceState, tasks: Sequence[TaskInfo]) -> str | None:
    """None when Swarm's last update did not fail and every replica runs; else what is wrong."""
    if state.update_state is not None and state.update_state not in ("completed", "updating"):
        return f"Swarm's last update ended {state.update_state}"
    status = make_status(state, tasks)
    desired = status.replicas_desired
    if desired is not None and status.replicas_running < desired:
        return f"only {status.replicas_running} of {desired} replicas run it"
    return None


def _addresses(members: Sequence[Member]) -> list[tuple[str, str]]:
    """What nginx's upstream says of members: each address and its server parameters."""
    return sorted(
        (member.address, member.parameters if isinstance(member, Endpoint) else "")
        for member in members
    )
