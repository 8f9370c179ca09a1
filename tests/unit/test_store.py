"""The history store: ordering, paging, the newest per service, old databases upgraded."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from deployer.models import Deployment, DeploymentState, Step, StepState, utc_now
from deployer.store import Store

NOW = utc_now()


def recorded(store: Store, number: int, service: str = "web", steps: int = 2) -> Deployment:
    created = NOW + timedelta(seconds=number)
    deployment = Deployment(
        id=f"d{number:03d}",
        service=service,
        trigger="test",
        image="img",
        tag="latest",
        state=DeploymentState.SUCCEEDED,
        created_at=created,
        steps=[Step(f"s{i}", StepState.SUCCEEDED, created) for i in range(steps)],
    )
    store.save(deployment)
    return deployment


def test_history_pages_back_with_a_cursor(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    for number in range(7):
        recorded(store, number)

    first = [d.id for d in store.history("web", 3)]
    second = [d.id for d in store.history("web", 3, before=first[-1])]
    third = [d.id for d in store.history("web", 3, before=second[-1])]

    assert (first, second, third) == (
        ["d006", "d005", "d004"],
        ["d003", "d002", "d001"],
        ["d000"],
    )


def test_saving_again_keeps_a_deployments_place(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    older, newer = recorded(store, 1), recorded(store, 2)
    older.state = DeploymentState.FAILED
    store.save(older)

    assert [d.id for d in store.history()] == [newer.id, older.id]


def test_recent_gives_the_newest_per_service_with_steps_for_the_newest_only(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "db.sqlite3")
    for number in range(5):
        recorded(store, number, "web")
        recorded(store, 10 + number, "api")

    found = store.recent(["web", "api", "new"], 3)

    assert {name: [d.id for d in items] for name, items in found.items()} == {
        "web": ["d004", "d003", "d002"],
        "api": ["d014", "d013", "d012"],
        "new": [],
    }
    assert [len(d.steps) for d in found["web"]] == [2, 0, 0]


def test_a_database_from_before_the_logs_column_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE deployments (id TEXT PRIMARY KEY, service TEXT NOT NULL, trigger TEXT "
            "NOT NULL, image TEXT NOT NULL, tag TEXT NOT NULL, state TEXT NOT NULL, digest TEXT, "
            "requested_digest TEXT, previous_digest TEXT, container TEXT, error TEXT, "
            "created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT)"
        )
        old.execute(
            "INSERT INTO deployments (id, service, trigger, image, tag, state, created_at) "
            "VALUES ('d1', 'web', 'push', 'img', 'latest', 'succeeded', ?)",
            (NOW.isoformat(),),
        )

    store = Store(path)

    found = store.get("d1")
    assert found is not None
    assert (found.state, found.logs) == (DeploymentState.SUCCEEDED, None)
