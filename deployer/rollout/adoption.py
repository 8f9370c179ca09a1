"""At start: decide from the store and the engine what serves each service, point nginx at it,
then clean up and settle the deployments the last run did not finish.

The recovery rule, by the step a deployment was in when deployer stopped or was killed:

| interrupted at      | after the restart                                                     |
| ------------------- | --------------------------------------------------------------------- |
| (queued)            | runs as usual (queued deployments are kept and resumed)               |
| resolve, pull       | `failed: interrupted at <step>`; nothing was started; the old serves  |
| start, healthy      | `failed`; the new container (found by its recorded name) is removed   |
| nginx               | `failed`; nginx is reloaded with the old container, *then* the new    |
|                     | container is removed                                                   |
| drain, retire       | nginx already sends traffic to the new container: it serves; the      |
|                     | deployment is resumed: the rest of the drain, then the retire, both   |
|                     | recorded; it ends `succeeded`                                          |
| stop-first, between | the new containers are removed first (never both releases at once),   |
| stop and nginx      | then the old release's stopped containers are started again and serve |
|                     | (left stopped, and said so, when a new one could not be removed); in  |
|                     | `stop` itself an old one still running may still be being stopped by  |
|                     | the engine (a SIGKILL of deployer does not cancel that): it is stopped |
|                     | (which waits that stop out, up to `stop_timeout`), then started again |

So: per service, the running containers of the newest deployment whose `nginx` step succeeded
serve (all its replicas that run, and those that are `restarting` or `paused`: they come back
by themselves, so they are listed and never removed; containers no deployment record knows of
rank below those, newest first); nginx is
tested and reloaded with that at every start, since after a crash its running config is
unknown; only then are other containers removed, and never one nginx might still send
traffic to (when that reload fails, only containers nginx was never told about go).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from deployer.backends.base import Backend, ContainerInfo
from deployer.config import Config, ServiceConfig
from deployer.errors import ContainerMissing, DockerError, NginxError
from deployer.fleet import Fleet
from deployer.models import Deployment, DeploymentState, StepState, utc_now
from deployer.nginx import NginxConfigurator
from deployer.rollout.containers import container_names
from deployer.store import Store

log = logging.getLogger(__name__)
NEVER = datetime.min.replace(tzinfo=UTC)
COMES_BACK = ("restarting", "paused")  # not running now, but not gone either


@dataclass
class ServicePlan:
    """What adoption found for one service and what it will do (no changes made yet)."""

    name: str
    serving: list[ContainerInfo] = field(default_factory=list)  # one release's replicas
    leftovers: list[ContainerInfo] = field(default_factory=list)  # remove once nginx is away
    finishing: Deployment | None = None  # switched, unfinished: resumed to drain and retire
    interrupted: list[Deployment] = field(default_factory=list)  # not switched: failed


def plan_service(
    name: str, containers: list[ContainerInfo], records: dict[str, Deployment]
) -> ServicePlan:
    """Which of a service's containers serves, which go, and what becomes of its unfinished
    deployments (`records`: deployment id -> deployment, for its containers and running ones)."""
    plan = ServicePlan(name)

    def known_unswitched(container: ContainerInfo) -> bool:
        record = records.get(container.deployment)
        return record is not None and record.switched_at is None

    def rank(container: ContainerInfo) -> tuple[datetime, datetime]:
        record = records.get(container.deployment)
        switched = record.switched_at if record is not None else None
        return (switched or NEVER, container.started_at or NEVER)

    def switched(container: ContainerInfo) -> bool:
        record = records.get(container.deployment)
        return record is not None and record.switched_at is not None

    def can_serve(container: ContainerInfo) -> bool:
        if not container.address or known_unswitched(container):
            return False  # nginx cannot reach it, or nginx was never sent to it
        # Between two restart-policy restarts, or paused: a switched release's replica comes
        # back by itself; removing it would leave the service without a server.
        comes_back = container.status in COMES_BACK and switched(container)
        return container.status == "running" or comes_back

    releases: dict[str, list[ContainerInfo]] = {}
    for container in containers:
        if can_serve(container):
            releases.setdefault(container.deployment or container.id, []).append(container)
    best = max(releases.values(), key=lambda group: max(map(rank, group)), default=[])
    plan.serving = sorted(best, key=lambda container: container.name)
    serving_deployments = {container.deployment for container in plan.serving}
    unfinished = [
        record
        for record in records.values()
        if record.service == name and record.state is DeploymentState.RUNNING
    ]
    for record in unfinished:
        if record.switched_at is not None and record.id in serving_deployments:
            plan.finishing = record
        else:
            plan.interrupted.append(record)
    for container in containers:
        if container in plan.serving:
            continue
        served_before = not known_unswitched(container) and container.status == "running"
        if plan.finishing is not None and served_before:
            continue  # the resumed deployment drains and retires it gracefully
        plan.leftovers.append(container)
    return plan


def render_current(config: Config, backend: Backend, store: Store, nginx: NginxConfigurator) -> str:
    """The upstream config as adoption would write it now (reads only; changes nothing)."""
    fleet = Fleet(config.services)
    containers = _known_containers(config, backend, store, forget_gone=False)
    for plan in _plans(config, containers, store).values():
        if plan.serving:
            fleet.adopt(plan.name, plan.serving, plan.serving[0].started_at or utc_now())
    return nginx.render(fleet.upstreams())


def adopt_running(
    config: Config, backend: Backend, fleet: Fleet, store: Store, nginx: NginxConfigurator
) -> tuple[list[str], list[Deployment]]:
    """Adopt, reload nginx, clean up, settle unfinished deployments.

    Returns one line per service saying what was done, and the deployments to resume.
    """
    containers = _known_containers(config, backend, store)
    restarted = _start_halted_again(config, containers, store, backend)
    if restarted.started or restarted.removed:
        containers = _known_containers(config, backend, store)
    plans = _plans(config, containers, store)
    for plan in plans.values():
        if plan.serving:
            fleet.adopt(plan.name, plan.serving, _since(plan.serving[0], store))
    try:
        nginx.apply(fleet.upstreams(), force=True)
        nginx_problem = ""
    except NginxError as err:
        log.error("nginx could not be reloaded at start: %s", err)
        nginx_problem = str(err).splitlines()[0]
    report, resumed = [], []
    for plan in plans.values():
        removed = {
            **restarted.removed.get(plan.name, {}),
            **_remove_leftovers(plan, backend, store, nginx_in_sync=not nginx_problem),
        }
        report.append(_describe(plan, removed))
        for record in plan.interrupted:
            _close_interrupted(store, record, plan, removed)
        if plan.finishing is not None:
            mark_interrupted_step(plan.finishing)
            store.save(plan.finishing)
            resumed.append(plan.finishing)
    if nginx_problem:
        report.append(f"nginx: {nginx_problem}")
    report += [
        f"{name}: started again (a stop-first deployment was interrupted)"
        for name in restarted.started
    ]
    report += restarted.problems
    _close_unconfigured(config, containers, store)
    return report, resumed


def _known_containers(
    config: Config, backend: Backend, store: Store, forget_gone: bool = True
) -> list[ContainerInfo]:
    """The containers labelled for this instance, and those taken over by `deployer adopt`
    (no labels: the store remembers them; one the engine no longer has is forgotten, unless
    `forget_gone` is false: a read-only caller)."""
    containers = backend.list_managed(config.instance)
    listed = {container.id for container in containers}
    for remembered in store.adopted():
        if remembered.id in listed or remembered.service not in config.services:
            continue
        try:
            found = backend.inspect(remembered.id)
        except ContainerMissing:
            if forget_gone:
                store.forget_adopted(remembered.id)
            continue
        containers.append(
            replace(
                found,
                service=remembered.service,
                digest=remembered.digest,
                deployment=remembered.deployment,
                address=remembered.address,
            )
        )
    return containers


@dataclass
class Restarted:
    """What adoption did for stop-first deployments cut off in their gap."""

    started: list[str] = field(default_factory=list)  # old containers started again
    removed: dict[str, dict[str, str]] = field(default_factory=dict)  # service -> name -> what
    problems: list[str] = field(default_factory=list)  # report lines: left stopped, and why


def _start_halted_again(
    config: Config, containers: list[ContainerInfo], store: Store, backend: Backend
) -> Restarted:
    """A stop-first deployment interrupted before its switch left the old release stopped:
    remove its own new containers, then start those old ones again (the newest switched
    release of that service). Never both at once: the service may be a single writer."""
    done = Restarted()
    for record in store.in_state(DeploymentState.RUNNING):
        if record.last_step("stop") is None or record.switched_at is not None:
            continue
        halted = _halted(record, containers, store)
        if not halted:
            continue
        removed = _remove_interrupted_new(config, record, containers, backend)
        done.removed.setdefault(record.service, {}).update(removed)
        left = [name for name, outcome in removed.items() if outcome != "removed"]
        if left:
            done.problems.append(
                f"{record.service}: {', '.join(c.name for c in halted)} left stopped: the new "
                f"container {', '.join(left)} could not be removed and both must never run at "
                "once; remove it by hand, then deploy again"
            )
            continue
        service = config.services.get(record.service)
        stop_timeout = (
            service.stop_timeout if service else ServiceConfig.model_fields["stop_timeout"].default
        )
        for container in halted:
            try:
                if not container.stopped:  # the engine may still be stopping it: let it end
                    backend.halt(container.id, stop_timeout)
                backend.start_again(container.id)
                done.started.append(container.name)
            except DockerError as err:
                log.error("could not start %s again: %s", container.name, err)
    return done


def _halted(
    record: Deployment, containers: list[ContainerInfo], store: Store
) -> list[ContainerInfo]:
    """The containers of the newest switched release of the record's service that its stop
    step reached: stopped, or (killed during `stop`) possibly still being stopped by the engine,
    which a SIGKILL of deployer does not cancel: those may exit any moment."""
    halted: dict[str, list[ContainerInfo]] = {}
    in_stop = record.steps[-1].name == "stop" if record.steps else False
    for container in containers:
        previous = store.get(container.deployment) if container.deployment else None
        if (
            container.service == record.service
            and (container.status == "exited" or (in_stop and not container.stopped))
            and previous is not None
            and previous.switched_at is not None
        ):
            halted.setdefault(previous.id, []).append(container)
    if not halted:
        return []
    return halted[max(halted, key=lambda deployment_id: _switched(store, deployment_id))]


def _remove_interrupted_new(
    config: Config, record: Deployment, containers: list[ContainerInfo], backend: Backend
) -> dict[str, str]:
    """Remove the containers an interrupted deployment started (by the names recorded before
    the engine was asked, and any labelled with it); name -> what happened. They were never
    switched to: nothing relies on them."""
    service = config.services.get(record.service)
    recorded = container_names(record.service, record.id, service.replicas if service else 1)
    found = {c.name for c in containers if c.deployment == record.id}
    done = {}
    for name in sorted(found | set(recorded)):
        try:
            backend.remove(name)  # one never created is fine: gone already
        except DockerError as err:
            done[name] = f"could not be removed ({err})"
            continue
        if name in found:
            done[name] = "removed"
    return done


def _switched(store: Store, deployment_id: str) -> datetime:
    record = store.get(deployment_id)
    return (record.switched_at if record is not None else None) or NEVER


def _plans(config: Config, containers: list[ContainerInfo], store: Store) -> dict[str, ServicePlan]:
    records = {record.id: record for record in store.in_state(DeploymentState.RUNNING)}
    for container in containers:
        if container.deployment and container.deployment not in records:
            record = store.get(container.deployment)
            if record is not None:
                records[record.id] = record
    return {
        name: plan_service(name, [c for c in containers if c.service == name], records)
        for name, service in config.services.items()
        if service.engine != "swarm"  # deployer/rollout/swarm_adoption.py
    }


def _since(container: ContainerInfo, store: Store) -> datetime:
    record = store.get(container.deployment)
    switched = record.switched_at if record is not None else None
    return switched or container.started_at or utc_now()


def _remove_leftovers(
    plan: ServicePlan, backend: Backend, store: Store, nginx_in_sync: bool
) -> dict[str, str]:
    """Remove what should not run; return name -> what happened to it."""
    done = {}
    for container in plan.leftovers:
        record = store.get(container.deployment)
        nginx_never_knew = record is not None and not record.reached_nginx
        if not nginx_in_sync and not nginx_never_knew and container.status == "running":
            done[container.name] = "left running until nginx is reloaded successfully"
            continue
        try:
            backend.remove(container.id)
            done[container.name] = "removed"
        except DockerError as err:
            done[container.name] = f"could not be removed ({err}); removed at the next deployment"
        log.warning("%s: leftover %s %s", plan.name, container.name, done[container.name])
    return done


def _describe(plan: ServicePlan, removed: dict[str, str]) -> str:
    line = f"{plan.name}: no running container"
    if plan.serving:
        names = ", ".join(container.name for container in plan.serving)
        addresses = ", ".join(container.address for container in plan.serving)
        line = f"{plan.name}: adopted {names} ({plan.serving[0].digest}) on {addresses}"
    if plan.finishing is not None:
        line += f"; resuming deployment {plan.finishing.id} to drain and retire the old container"
    for name, outcome in removed.items():
        line += f"; {name} {outcome}"
    return line


def mark_interrupted_step(record: Deployment) -> str:
    """Close the step that was running when deployer stopped; return its name."""
    running = [step for step in record.steps if step.state is StepState.RUNNING]
    for step in running:
        step.state = StepState.INTERRUPTED
        step.finished_at = utc_now()
        step.detail = (step.detail + "; " if step.detail else "") + "deployer stopped here"
    return running[-1].name if running else (record.steps[-1].name if record.steps else "start")


def _close_interrupted(
    store: Store, record: Deployment, plan: ServicePlan, removed: dict[str, str]
) -> None:
    step = mark_interrupted_step(record)
    record.state = DeploymentState.FAILED
    record.finished_at = utc_now()
    parts = [f"interrupted at {step}: deployer stopped before this deployment finished"]
    if record.container and record.container in removed:
        parts.append(f"{record.container} {removed[record.container]}")
    names = ", ".join(container.name for container in plan.serving)
    parts.append(
        f"{names} keep{'s' * (len(plan.serving) == 1)} serving"
        if plan.serving
        else f"nothing serves {plan.name}"
    )
    parts.append(f"deploy again with `deployer deploy {plan.name}`")
    record.error = "; ".join(parts)
    store.save(record)
    log.warning("deployment %s of %s %s", record.id, record.service, record.error)


def _close_unconfigured(config: Config, containers: list[ContainerInfo], store: Store) -> None:
    """Deployments of services no longer in the config: failed, their containers left alone."""
    for record in store.in_state(DeploymentState.QUEUED, DeploymentState.RUNNING):
        if record.service in config.services:
            continue
        mark_interrupted_step(record)
        record.state = DeploymentState.FAILED
        record.finished_at = utc_now()
        record.error = f"service {record.service} is no longer in the config; not deployed"
        store.save(record)
    for name in sorted({c.service for c in containers} - set(config.services)):
        names = ", ".join(c.name for c in containers if c.service == name)
        log.warning(
            "containers %s belong to service %s, which is not configured: left alone", names, name
        )
