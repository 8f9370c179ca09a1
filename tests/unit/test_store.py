"""The history store: ordering, paging, the newest per service, old databases upgraded."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from deployer.models import Deployment, DeploymentState, Step, StepState, utc_now
from deployer.store import NEWEST_FIRST, Store

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


OLD_INDEXES = """
CREATE TABLE deployments (id TEXT PRIMARY KEY, service TEXT NOT NULL, trigger TEXT NOT NULL,
    image TEXT NOT NULL, tag TEXT NOT NULL, state TEXT NOT NULL, digest TEXT,
    requested_digest TEXT, previous_digest TEXT, container TEXT, error TEXT, logs TEXT,
    gap_seconds REAL, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT);
CREATE INDEX deployments_by_service ON deployments (service, created_at);
CREATE INDEX deployments_by_time ON deployments (created_at);
CREATE INDEX deployments_by_state ON deployments (state);
"""


def plan(path: Path, where: str = "", params: tuple[str, ...] = ()) -> list[str]:
    with sqlite3.connect(path) as db:
        return [
            row[3]
            for row in db.execute(
                f"EXPLAIN QUERY PLAN SELECT * FROM deployments {where} "  # noqa: S608
                f"ORDER BY {NEWEST_FIRST} LIMIT 20",
                params,
            )
        ]


def test_history_pages_are_read_in_index_order_without_a_sort(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    Store(path).close()

    for steps in (plan(path), plan(path, "WHERE service = ?", ("web",))):
        assert not any("TEMP B-TREE" in step for step in steps), steps


def test_a_database_with_the_old_indexes_gets_the_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_INDEXES)
        for number in (1, 2):
            old.execute(
                "INSERT INTO deployments (id, service, trigger, image, tag, state, created_at) "
                "VALUES (?, 'web', 'push', 'img', 'latest', 'succeeded', ?)",
                (f"d{number:03d}", (NOW + timedelta(seconds=number)).isoformat()),
            )

    store = Store(path)

    with sqlite3.connect(path) as db:
        indexes = {
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
    assert "deployments_by_time" not in indexes
    assert "deployments_by_service" not in indexes
    assert not any("TEMP B-TREE" in step for step in plan(path))
    assert [d.id for d in store.history("web")] == ["d002", "d001"]


def test_history_marks_list_what_history_lists_without_the_steps(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    for number in range(6):
        recorded(store, number, "web" if number % 2 else "api", steps=number)
    failed = recorded(store, 9, "web")
    failed.state, failed.finished_at, failed.error = DeploymentState.FAILED, NOW, "boom"
    store.save(failed)

    for service, before in ((None, None), ("web", None), (None, "d004"), ("web", "d009")):
        listed = store.history(service, 3, before)
        marks = store.history_marks(service, 3, before)
        assert [(m.id, m.state, m.finished_at, m.error, m.steps) for m in marks] == [
            (d.id, d.state, d.finished_at, d.error, len(d.steps)) for d in listed
        ]
    assert store.history_marks(limit=1)[0].error == "boom"


def test_many_loads_deployments_with_their_steps_by_id(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    for number in range(3):
        recorded(store, number, steps=number + 1)

    found = store.many(["d002", "d000", "gone"])

    assert {key: len(value.steps) for key, value in found.items()} == {"d002": 3, "d000": 1}
    assert store.many([]) == {}
    assert (store.has("d001"), store.has("gone")) == (True, False)


def test_a_services_digests_are_read_through_its_service_index(tmp_path: Path) -> None:
    # Nearly every deployment succeeded: the state index would read the whole history.
    store = Store(tmp_path / "db.sqlite3")
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)

    store.digests("web", succeeded_only=True)

    store._db.set_trace_callback(None)
    query = next(sql for sql in statements if sql.startswith("SELECT digest"))
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        steps = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}")]
    assert "deployments_by_service_time" in steps[0], steps
