"""History retention: the newest N per service, an age limit, and what is never pruned."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from flask import Flask

from deployer.config import Config
from deployer.models import Deployment, DeploymentState, Step, StepState, utc_now
from deployer.retention import prune_history
from deployer.runtime import Runtime
from deployer.store import Store
from tests.conftest import WEB_IMAGE, make_config
from tests.fakes import FakeBackend
from tests.helpers import deploy

NOW = utc_now()


def digest(number: int) -> str:
    return "sha256:" + f"{number:x}" * 64


def record(store: Store, number: int, **fields: object) -> Deployment:
    created = NOW - timedelta(days=100) + timedelta(hours=number)
    deployment = Deployment(
        id=f"d{number:04d}",
        service="web",
        trigger="test",
        image=WEB_IMAGE,
        tag="latest",
        state=fields.pop("state", DeploymentState.SUCCEEDED),  # type: ignore[arg-type]
        digest=fields.pop("digest", digest(number % 7 + 8)),  # type: ignore[arg-type]
        created_at=created,
        finished_at=created,
        steps=[Step("resolve", StepState.SUCCEEDED, created, created, "ok")],
    )
    store.save(deployment)
    return deployment


def ids(store: Store) -> list[str]:
    return [d.id for d in store.history("web", 10_000)]


def config_with(tmp_path: Path, **history: object) -> Config:
    return make_config(tmp_path, history={"keep_per_service": 10, **history})


def test_the_newest_are_kept_and_the_rest_pruned(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    for number in range(40):
        record(store, number, digest=digest(5))

    removed = prune_history(config_with(tmp_path), store, "web", containers_of=())

    assert removed == 30
    assert ids(store) == [f"d{number:04d}" for number in range(39, 29, -1)]


def test_what_a_container_or_a_kept_image_needs_is_never_pruned(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    serving_old = record(store, 0, digest=digest(1))  # its container still runs
    kept_image = record(store, 1, digest=digest(2))  # rollback target (keep_images 3)
    queued = record(store, 2, digest=None, state=DeploymentState.QUEUED)
    for number in range(3, 40):
        record(store, number, digest=digest(3), state=DeploymentState.FAILED)
    record(store, 40, digest=digest(4))

    prune_history(config_with(tmp_path), store, "web", containers_of={serving_old.id})

    kept = ids(store)
    assert {serving_old.id, kept_image.id, queued.id} <= set(kept)
    assert len(kept) == 10 + 3


def test_an_age_limit_prunes_older_ones_beyond_what_must_stay(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    for number in range(20):
        record(store, number, digest=digest(5))

    prune_history(config_with(tmp_path, max_age_days=1), store, "web", containers_of=())

    assert ids(store) == ["d0019"]  # the newest succeeded of a kept image; the rest too old


def test_the_database_stays_bounded_under_endless_deployments(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    config = config_with(tmp_path)
    sizes = []
    for round_number in range(6):
        for number in range(round_number * 300, (round_number + 1) * 300):
            record(store, number, digest=digest(5))
        prune_history(config, store, "web", containers_of=())
        sizes.append((tmp_path / "db.sqlite3").stat().st_size)

    assert max(sizes[2:]) <= sizes[1] * 1.1, sizes  # no growth once pruning keeps up


def test_a_finished_deployment_prunes_its_service(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend
) -> None:
    runtime: Runtime = make_app(config_with(tmp_path)).extensions["deployer"]
    for number in range(15):
        record(runtime.store, number, digest=digest(5))
    backend.push(WEB_IMAGE, "latest", digest(6))

    done = deploy(runtime)

    kept = ids(runtime.store)
    assert done.id in kept
    assert len(kept) == 10
