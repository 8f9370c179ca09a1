"""The core path on the real engine, registry and nginx."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from deployer import create_app
from deployer.backends.docker import DockerBackend
from deployer.config import parse_config
from deployer.demo import dockerhub_payload
from deployer.models import Deployment, DeploymentState, Step
from deployer.runtime import Runtime
from deployer.sandbox import AppBehaviour, ImageFactory, SandboxNginx
from deployer.sandbox.images import SLOW_PATH
from deployer.sandbox.load import Load
from deployer.sandbox.net import http_get, wait_for_http

pytestmark = pytest.mark.integration
TOKEN = "integration-token-0123456789"
ADMIN_TOKEN = "integration-admin-0123456789"
ENVIRON = {"DEPLOYER_TOKEN": TOKEN, "DEPLOYER_ADMIN_TOKEN": ADMIN_TOKEN}


@dataclass
class Bed:
    runtime: Runtime
    client: FlaskClient
    nginx: SandboxNginx
    repositories: dict[str, str]
    data: dict[str, Any] = field(default_factory=dict)

    def push(self, service: str, version: str, images: ImageFactory, **kwargs: Any) -> None:
        images.build(service, version, tag="latest", **kwargs)
        self.webhook(service)

    def webhook(self, service: str) -> None:
        """The Docker Hub webhook for service's repository at `latest` (the image is pushed)."""
        answer = self.client.post(
            f"/webhooks/dockerhub/{TOKEN}",
            json=dockerhub_payload(self.repositories[service], "latest"),
        )
        assert answer.status_code == 202, answer.json

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        time.sleep(0.05)
        while not self.runtime.queue.idle():
            assert time.monotonic() < deadline, "deployments did not finish"
            time.sleep(0.05)

    def last(self, service: str) -> Any:
        return self.runtime.store.history(service, 1)[0]


@pytest.fixture
def make_bed(
    images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    make_nginx: Callable[[list[str]], SandboxNginx],
    tmp_path: Path,
) -> Iterator[Callable[..., Bed]]:
    runtimes: list[Runtime] = []

    def make(
        services: tuple[str, ...] = ("web",),
        nginx: SandboxNginx | None = None,
        drain: float = 1,
        options: dict[str, Any] | None = None,
        pid_file: bool = True,
        **health: Any,
    ) -> Bed:
        nginx = nginx or make_nginx(list(services))
        nginx_section = nginx.deployer_config()
        if not pid_file:  # nginx's workers are not watched: the drain counts connections
            del nginx_section["pid_file"]
        data = {
            "state_dir": str(tmp_path / "state"),
            "instance": instance,
            "queue": {"coalesce": 0.5},
            "nginx": nginx_section,
            "services": {
                name: {
                    "image": images.repository(name),
                    "ports": port_pool(10),
                    "drain": drain,
                    "stop_timeout": 5,
                    "health": {"timeout": 5, "interval": 0.1, **health},
                    **(options or {}),
                }
                for name in services
            },
        }
        config = parse_config(data, environ=ENVIRON)
        app = create_app(config, backend=DockerBackend(), environ=ENVIRON)
        runtime: Runtime = app.extensions["deployer"]
        runtime.start()
        runtimes.append(runtime)
        repositories = {name: service.repository for name, service in config.services.items()}
        return Bed(runtime, app.test_client(), nginx, repositories, data)

    yield make
    for runtime in runtimes:
        runtime.stop(10)
        runtime.store.close()


def step(deployment: Deployment, name: str) -> Step:
    return next(item for item in deployment.steps if item.name == name)


def test_v1_to_v2_under_continuous_load_drops_no_request(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    bed = make_bed()
    bed.push("web", "v1", images)
    bed.wait_idle()
    assert bed.last("web").state is DeploymentState.SUCCEEDED
    # nginx.pid_file is set: the nginx step waited until nginx applied the reload.
    assert http_get(bed.nginx.url("web", "/version")) == (200, "v1\n")

    with Load(bed.nginx.url("web", "/version")) as load:
        time.sleep(0.5)
        bed.push("web", "v2", images)
        bed.wait_idle()
        time.sleep(0.5)

    deployment = bed.last("web")
    assert deployment.state is DeploymentState.SUCCEEDED, deployment.error
    assert load.failures() == []
    assert sum(answer.ok for answer in load.answers) > 100
    # While nginx reloads, old and new workers both accept for a moment and v1/v2 mix; once
    # the nginx step is done (it waited for the old workers to stop accepting), only v2.
    assert load.bodies()[0] == "v1"
    assert load.bodies()[-1] == "v2"
    switched_at = step(deployment, "nginx").finished_at
    assert switched_at is not None
    switched = switched_at.timestamp()
    after = [a.body.strip() for a in load.answers if a.ok and a.began > switched]
    assert after
    assert set(after) == {"v2"}
    assert [c.digest for c in bed.runtime.backend.list_managed(bed.runtime.config.instance)] == [
        deployment.digest
    ]


@pytest.mark.parametrize(
    ("behaviour", "expected", "logs"),
    [
        (
            AppBehaviour.EXIT,
            "exited (status 3) before it was healthy",
            "fatal: cannot read /etc/app.conf",
        ),
        (AppBehaviour.SILENT, "did not answer GET /healthz with 2xx within 3 s", "waiting forever"),
    ],
)
def test_bad_release_leaves_the_old_container_serving_and_nginx_unchanged(
    make_bed: Callable[..., Bed],
    images: ImageFactory,
    behaviour: AppBehaviour,
    expected: str,
    logs: str,
) -> None:
    bed = make_bed(timeout=3)
    bed.push("web", "v1", images)
    bed.wait_idle()
    assert http_get(bed.nginx.url("web", "/version")) == (200, "v1\n")
    nginx_before = bed.nginx.upstreams.read_text()

    bed.push("web", f"bad-{behaviour.value}", images, behaviour=behaviour)
    bed.wait_idle()

    failed = bed.last("web")
    assert failed.state is DeploymentState.FAILED
    assert expected in failed.error
    assert logs in failed.logs  # the container's own output, kept apart from the error
    assert logs not in failed.error
    assert bed.nginx.upstreams.read_text() == nginx_before
    assert http_get(bed.nginx.url("web", "/version")) == (200, "v1\n")
    assert len(bed.runtime.backend.list_managed(bed.runtime.config.instance)) == 1


def test_twenty_identical_webhooks_at_once_run_one_deployment(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    bed = make_bed()
    images.build("web", "v1", tag="latest")
    payload = dockerhub_payload(bed.repositories["web"], "latest")
    answers: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(
                bed.client.post(f"/webhooks/dockerhub/{TOKEN}", json=payload).json
            )
        )
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bed.wait_idle()

    ids = {answer["deployments"][0]["id"] for answer in answers}
    assert len(answers) == 20
    assert len(ids) == 1
    assert [d.state for d in bed.runtime.store.history("web")] == [DeploymentState.SUCCEEDED]


def test_pushes_for_two_services_deploy_in_parallel(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    bed = make_bed(services=("web", "api"))
    images.build("web", "v1", tag="latest", behaviour=AppBehaviour.SLOW, delay=2)
    images.build("api", "v1", tag="latest", behaviour=AppBehaviour.SLOW, delay=2)
    for service in ("web", "api"):
        bed.client.post(
            f"/webhooks/dockerhub/{TOKEN}",
            json=dockerhub_payload(bed.repositories[service], "latest"),
        )
    bed.wait_idle()

    web, api = bed.last("web"), bed.last("api")
    timeline = [(d.service, d.state, d.started_at, d.finished_at, d.error) for d in (web, api)]
    assert (web.state, api.state) == (DeploymentState.SUCCEEDED, DeploymentState.SUCCEEDED), (
        timeline
    )
    assert web.started_at < api.finished_at, timeline
    assert api.started_at < web.finished_at, timeline
    assert http_get(bed.nginx.url("api", "/version")) == (200, "v1\n")
    assert http_get(bed.nginx.url("web", "/version")) == (200, "v1\n")


def test_restarted_deployer_adopts_without_duplicating(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    first = make_bed()
    first.push("web", "v1", images)
    first.wait_idle()
    first.runtime.stop(5)

    second = make_bed(nginx=first.nginx)

    managed = second.runtime.backend.list_managed(second.runtime.config.instance)
    assert [c.name for c in managed] == [first.last("web").container]
    assert second.runtime.fleet.serving("web") is not None
    assert http_get(first.nginx.url("web", "/version")) == (200, "v1\n")
    second.push("web", "v1", images)
    second.wait_idle()
    assert second.last("web").state is DeploymentState.SKIPPED


def test_rollback_through_the_admin_api_serves_the_previous_release_from_the_kept_image(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    bed = make_bed()
    bed.push("web", "v1", images)
    bed.wait_idle()
    v1 = bed.last("web")
    bed.push("web", "v2", images)
    bed.wait_idle()
    assert http_get(bed.nginx.url("web", "/version")) == (200, "v2\n")

    answer = bed.client.post(
        "/services/web/rollback", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    bed.wait_idle()

    assert answer.status_code == 202
    rollback = bed.last("web")
    assert rollback.id == answer.json["id"]  # type: ignore[index]
    assert rollback.state is DeploymentState.SUCCEEDED, rollback.error
    assert rollback.digest == v1.digest
    assert step(rollback, "pull").detail.endswith("is on the engine already")
    assert http_get(bed.nginx.url("web", "/version")) == (200, "v1\n")
    managed = bed.runtime.backend.list_managed(bed.runtime.config.instance)
    assert [container.digest for container in managed] == [v1.digest]
    status = bed.client.get("/status").json["services"]["web"]  # type: ignore[index]
    assert (status["state"], status["digest"]) == ("running", v1.digest)


def switch_during_a_slow_request(
    bed: Bed, images: ImageFactory
) -> tuple[Deployment, list[tuple[int, str]]]:
    """Push v2 while a 1.5 s request is in flight on v1; the finished deployment, and that
    request's answer."""
    answers: list[tuple[int, str]] = []
    slow = threading.Thread(
        target=lambda: answers.append(
            http_get(bed.nginx.url("web", f"{SLOW_PATH}?1.5"), timeout=10)
        )
    )
    images.build("web", "v2", tag="latest")
    slow.start()  # in flight on v1 when v2 takes over (the switch comes within ~1 s)
    bed.webhook("web")
    bed.wait_idle()
    slow.join()
    return bed.last("web"), answers


def test_a_long_request_in_flight_at_the_switch_finishes_and_the_drain_waits_for_it_alone(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    bed = make_bed(drain=10)  # a cap far above what the drain should take
    bed.push("web", "v1", images)
    bed.wait_idle()

    with Load(bed.nginx.url("web", "/version")) as load:
        deployment, answers = switch_during_a_slow_request(bed, images)

    drain = step(deployment, "drain")
    assert deployment.state is DeploymentState.SUCCEEDED, deployment.error
    assert answers == [(200, "v1\n")]
    assert load.failures() == []
    found = re.fullmatch(
        r"web-\w+ had no request in flight after ([0-9.]+) s: no nginx worker from before the "
        r"switch is left",
        drain.detail,
    )
    assert found is not None, drain.detail
    assert 0.3 < float(found[1]) < 3  # waited for the long request, not the 10 s cap


def test_without_nginxs_pid_file_the_drain_waits_for_the_long_requests_connection(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    bed = make_bed(drain=10, pid_file=False)  # a cap far above what the drain should take
    bed.push("web", "v1", images)
    bed.wait_idle()
    v1 = bed.last("web")

    deployment, answers = switch_during_a_slow_request(bed, images)

    drain = step(deployment, "drain")
    assert deployment.state is DeploymentState.SUCCEEDED, deployment.error
    assert answers == [(200, "v1\n")]
    # "1 seen": the drain saw the request's connection and waited until it closed.
    found = re.fullmatch(
        rf"no connection to {v1.container} \(127\.0\.0\.1:\d+\) after ([0-9.]+) s \(1 seen, "
        r"none new for [0-9.]+ s\)",
        drain.detail,
    )
    assert found is not None, drain.detail
    assert 1.0 <= float(found[1]) < 3  # the request's connection, not the 10 s cap


def test_without_nginxs_pid_file_an_idle_old_app_is_retired_well_before_the_cap(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    bed = make_bed(drain=5, pid_file=False)
    bed.push("web", "v1", images)
    bed.wait_idle()
    v1 = bed.last("web")

    bed.push("web", "v2", images)
    bed.wait_idle()

    deployment = bed.last("web")
    drain = step(deployment, "drain")
    assert deployment.state is DeploymentState.SUCCEEDED, deployment.error
    assert re.fullmatch(
        rf"no connection to {v1.container} \(127\.0\.0\.1:\d+\) after 1\.\d\d s "
        r"\(none seen\)",
        drain.detail,
    ), drain.detail
    assert drain.finished_at is not None
    assert (drain.finished_at - drain.started_at).total_seconds() < 2  # not the 5 s cap
    assert step(deployment, "retire").detail == f"stopped and removed {v1.container}"


def test_two_replicas_switch_under_load_without_a_failed_request(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    bed = make_bed(options={"replicas": 2})
    bed.push("web", "v1", images)
    bed.wait_idle()

    with Load(bed.nginx.url("web", "/version"), clients=4) as load:
        time.sleep(0.5)
        bed.push("web", "v2", images)
        bed.wait_idle()
        time.sleep(0.5)

    deployment = bed.last("web")
    managed = bed.runtime.backend.list_managed(bed.runtime.config.instance)
    assert deployment.state is DeploymentState.SUCCEEDED, deployment.error
    assert load.failures() == []
    assert load.bodies()[-1] == "v2"
    assert sorted(c.name for c in managed) == [f"web-{deployment.id}-1", f"web-{deployment.id}-2"]
    upstream = bed.nginx.upstreams.read_text()
    assert all(f"server {c.address};" in upstream for c in managed)
    answered = {a.body for a in load.answers if a.ok and a.began > time.time() - 0.4}
    assert answered == {"v2\n"}


def test_stop_first_has_a_measured_gap_and_rolls_back_by_starting_the_old_release_again(
    make_bed: Callable[..., Bed], images: ImageFactory
) -> None:
    bed = make_bed(options={"strategy": "stop-first"}, timeout=3)
    bed.push("web", "v1", images)
    bed.wait_idle()
    v1 = bed.last("web")
    bed.push("web", "v2", images)
    bed.wait_idle()
    v2 = bed.last("web")

    bed.push("web", "bad", images, behaviour=AppBehaviour.EXIT)
    bed.wait_idle()
    failed = bed.last("web")

    assert v2.state is DeploymentState.SUCCEEDED, v2.error
    assert v2.gap_seconds is not None
    assert 0 < v2.gap_seconds < 5
    assert [s.name for s in v2.steps] == [
        "resolve",
        "pull",
        "stop",
        "start",
        "healthy",
        "nginx",
        "retire",
    ]
    assert failed.state is DeploymentState.FAILED
    assert f"rolled back: {v2.container} started again and serve" in failed.error
    assert http_get(bed.nginx.url("web", "/version")) == (200, "v2\n")
    managed = bed.runtime.backend.list_managed(bed.runtime.config.instance)
    assert [(c.name, c.status) for c in managed] == [(v2.container, "running")]
    assert v1.container not in [c.name for c in managed]
    page = bed.client.get(f"/deployments/{v2.id}", headers={"Accept": "text/html"}).text
    assert "nothing served for" in page


def test_a_container_run_by_hand_is_taken_over_and_replaced_without_a_failed_request(
    make_bed: Callable[..., Bed], images: ImageFactory, port_pool: Callable[[int], str]
) -> None:
    bed = make_bed()
    v1 = images.build("web", "v1", tag="latest")
    port = int(port_pool(2).split("-")[0])
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    started = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            f"hand-{bed.runtime.config.instance}",
            "--network",
            "host",
            "-e",
            f"PORT={port}",
            "--label",
            f"deployer.test={bed.runtime.config.instance}",
            f"{v1.repository}@{v1.digest}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    hand = started.stdout.strip()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=10)
        wrong = bed.client.post(
            "/services/web/adopt", json={"container": hand, "port": port + 1}, headers=admin
        )
        taken = bed.client.post("/services/web/adopt", json={"container": hand}, headers=admin)

        assert wrong.status_code == 409
        assert "is not reachable at" in wrong.json["error"]  # type: ignore[index]
        assert taken.status_code == 201, taken.json
        assert http_get(bed.nginx.url("web", "/version")) == (200, "v1\n")

        with Load(bed.nginx.url("web", "/version")) as load:
            bed.push("web", "v2", images)
            bed.wait_idle()

        deployment = bed.last("web")
        assert deployment.state is DeploymentState.SUCCEEDED, deployment.error
        assert deployment.previous_digest == v1.digest
        assert load.failures() == []
        assert load.bodies()[-1] == "v2"
        gone = subprocess.run(["docker", "inspect", hand], capture_output=True, check=False)
        assert gone.returncode != 0  # retired as an old release is: stopped and removed
    finally:
        subprocess.run(["docker", "rm", "-f", hand], capture_output=True, check=False)
