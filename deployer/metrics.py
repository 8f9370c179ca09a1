"""Prometheus metrics, in a registry of the app's own (so several apps never share counters).

deployer_deployments_total{service,state}         finished deployments
deployer_deployment_duration_seconds{service}     histogram, started -> finished
deployer_step_duration_seconds{step}              histogram, per recorded step
deployer_webhooks_total{source,outcome}           accepted | ignored | bad_token | bad_request |
                                                  too_large | unavailable
deployer_service_digest_info{service,digest,container}   1 per serving container (at scrape;
                                                  Swarm: per address nginx sends it to)
deployer_service_replicas{service}                containers serving (Swarm: tasks running the
                                                  service's digest, as last read)
deployer_swarm_replicas_desired{service}          replicas a Swarm service asks for
deployer_swarm_read_age_seconds{service}          seconds since the Swarm service was last read
deployer_deployment_running{service}              1 while a deployment of service runs
process_*                                         the deployer process (Linux)

Labels are service names, step names, states and digests: never a token, URL or path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from deployer.fleet import Fleet
from deployer.models import Deployment, utc_now
from deployer.swarm_view import SwarmSnapshot

SwarmReader = Callable[[str], SwarmSnapshot | None]  # a Swarm service as last read

WEBHOOK_OUTCOMES = ("accepted", "ignored", "bad_token", "bad_request", "too_large", "unavailable")
DEPLOYMENT_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _Serving(Collector):
    """Gauges read from the fleet and the queue at scrape time, so they are never stale."""

    def __init__(
        self,
        fleet: Fleet,
        services: Iterable[str],
        running: Callable[[str], bool],
        swarm: SwarmReader,
    ):
        self.fleet = fleet
        self.services = list(services)
        self.running = running
        self.swarm = swarm

    def collect(self) -> Iterator[Metric]:
        digest = GaugeMetricFamily(
            "deployer_service_digest_info",
            "1 for the image digest and container serving each service",
            labels=["service", "digest", "container"],
        )
        replicas = GaugeMetricFamily(
            "deployer_service_replicas",
            "Containers serving each service now (its replicas)",
            labels=["service"],
        )
        running = GaugeMetricFamily(
            "deployer_deployment_running",
            "1 while a deployment of the service runs",
            labels=["service"],
        )
        desired = GaugeMetricFamily(
            "deployer_swarm_replicas_desired",
            "Replicas each Swarm service asks for (as last read from the engine)",
            labels=["service"],
        )
        read_age = GaugeMetricFamily(
            "deployer_swarm_read_age_seconds",
            "Seconds since each Swarm service was last read from the engine (re-read every "
            "2 s: a growing value means the engine cannot be reached and the rest is stale)",
            labels=["service"],
        )
        now = utc_now()
        for service in self.services:
            serving = self.fleet.serving(service)
            members = serving.members if serving is not None else ()
            for member in members:
                digest.add_metric([service, member.digest, member.name], 1)
            snapshot = self.swarm(service)
            if snapshot is not None:
                status = snapshot.status
                replicas.add_metric([service], status.replicas_running if status else 0)
                desired.add_metric([service], (status.replicas_desired or 0) if status else 0)
                read_age.add_metric([service], (now - snapshot.read_at).total_seconds())
            else:
                replicas.add_metric([service], len(members))
            running.add_metric([service], 1 if self.running(service) else 0)
        yield digest
        yield replicas
        yield desired
        yield read_age
        yield running


class Metrics:
    """The counters and histograms deployer updates, and the text GET /metrics answers."""

    def __init__(
        self,
        fleet: Fleet,
        services: Iterable[str],
        running: Callable[[str], bool],
        swarm: SwarmReader = lambda name: None,
    ) -> None:
        names = sorted(services)
        self.registry = CollectorRegistry(auto_describe=True)
        self.deployments = Counter(
            "deployer_deployments",
            "Finished deployments by service and final state",
            ["service", "state"],
            registry=self.registry,
        )
        self.deployment_duration = Histogram(
            "deployer_deployment_duration_seconds",
            "Time from a deployment's start to its end (drain included)",
            ["service"],
            buckets=DEPLOYMENT_BUCKETS,
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "deployer_step_duration_seconds",
            "Duration of each deployment step",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = Counter(
            "deployer_webhooks",
            "Webhook requests by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.registry.register(_Serving(fleet, names, running, swarm))
        ProcessCollector(registry=self.registry)  # process_* (memory, CPU, open files)
        # Series exist from the start at 0, so `increase(...)` alerts see the first failure.
        for service in names:
            for state in ("succeeded", "failed"):
                self.deployments.labels(service, state)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhooks.labels("dockerhub", outcome)

    def deployment_finished(self, deployment: Deployment) -> None:
        """Count a finished deployment and observe its durations."""
        self.deployments.labels(deployment.service, deployment.state.value).inc()
        if deployment.started_at is not None and deployment.finished_at is not None:
            self.deployment_duration.labels(deployment.service).observe(
                (deployment.finished_at - deployment.started_at).total_seconds()
            )
        for step in deployment.steps:
            if step.finished_at is not None:
                self.step_duration.labels(step.name).observe(
                    (step.finished_at - step.started_at).total_seconds()
                )

    def webhook(self, source: str, outcome: str) -> None:
        self.webhooks.labels(source, outcome).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
