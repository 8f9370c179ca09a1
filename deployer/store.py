"""Deployment history in SQLite under state_dir: every deployment and each of its steps."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from deployer.backends.base import ContainerInfo
from deployer.models import Deployment, DeploymentState, Step, StepState

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    trigger TEXT NOT NULL,
    image TEXT NOT NULL,
    tag TEXT NOT NULL,
    state TEXT NOT NULL,
    digest TEXT,
    requested_digest TEXT,
    previous_digest TEXT,
    container TEXT,
    error TEXT,
    logs TEXT,
    gap_seconds REAL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
-- Newest first is (created_at, id) descending: with id in the index, a page is read in index
-- order and stops after `limit` rows (no sort of the rows sharing a created_at).
CREATE INDEX IF NOT EXISTS deployments_by_service_time ON deployments (service, created_at, id);
CREATE INDEX IF NOT EXISTS deployments_newest ON deployments (created_at, id);
CREATE INDEX IF NOT EXISTS deployments_by_state ON deployments (state);
CREATE TABLE IF NOT EXISTS steps (
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    detail TEXT NOT NULL,
    PRIMARY KEY (deployment_id, position)
);
-- Containers an operator started by hand that deployer took over (`deployer adopt`): they
-- carry no deployer labels, so this is how a restart finds them again.
CREATE TABLE IF NOT EXISTS adopted (
    container_id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    address TEXT NOT NULL,
    digest TEXT NOT NULL,
    deployment_id TEXT NOT NULL
);
"""
COLUMNS = (
    "id service trigger image tag state digest requested_digest previous_digest container "
    "error logs gap_seconds created_at started_at finished_at"
).split()
# Insert, or update in place (an in-place update keeps the row where it is). Constants only.
_VALUES = ", ".join("?" * len(COLUMNS))
_UPDATES = ", ".join(f"{column} = excluded.{column}" for column in COLUMNS[1:])
UPSERT = f"INSERT INTO deployments ({', '.join(COLUMNS)}) VALUES ({_VALUES}) " + (  # noqa: S608
    f"ON CONFLICT (id) DO UPDATE SET {_UPDATES}"
)
NEWEST_FIRST = "created_at DESC, id DESC"
# Columns newer than the first schema, added to old databases.
ADDED_COLUMNS = {"logs": "TEXT", "gap_seconds": "REAL"}
# Indexes of older databases that the ones above replace (their names were reused otherwise).
REPLACED_INDEXES = ("deployments_by_service", "deployments_by_time")


@dataclass(frozen=True)
class Mark:
    """A listed deployment without its steps: what its document depends on. A finished
    deployment never changes; should one, its mark changes with it."""

    id: str
    state: DeploymentState
    finished_at: datetime | None
    error: str | None
    steps: int  # how many steps are recorded


class Store:
    """Thread-safe SQLite history. One connection, serialised by a lock; WAL for readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            # Set before the first table exists (a new database): pruned pages go back to the
            # file system. An older database reuses its free pages: its size stays bounded too.
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            present = {row["name"] for row in self._db.execute("PRAGMA table_info(deployments)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE deployments ADD COLUMN {column} {kind}")
            for index in REPLACED_INDEXES:
                self._db.execute(f"DROP INDEX IF EXISTS {index}")

    def save(self, deployment: Deployment) -> None:
        """Insert or replace a deployment with all its steps, atomically."""
        row = [_to_db(getattr(deployment, column)) for column in COLUMNS]
        steps = [
            (
                deployment.id,
                position,
                step.name,
                step.state.value,
                _to_db(step.started_at),
                _to_db(step.finished_at),
                step.detail,
            )
            for position, step in enumerate(deployment.steps)
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(UPSERT, row)
                self._db.execute("DELETE FROM steps WHERE deployment_id = ?", (deployment.id,))
                self._db.executemany("INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?, ?)", steps)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, deployment_id: str) -> Deployment | None:
        """One deployment with its steps, or None."""
        found = self._select("WHERE id = ?", (deployment_id,))
        return found[0] if found else None

    def has(self, deployment_id: str) -> bool:
        """Whether a deployment with this id is recorded."""
        with self._lock:
            found = self._db.execute(
                "SELECT 1 FROM deployments WHERE id = ?", (deployment_id,)
            ).fetchone()
        return found is not None

    def many(self, ids: Collection[str]) -> dict[str, Deployment]:
        """These deployments with their steps, by id (an id not recorded is left out)."""
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        found = self._select(f"WHERE id IN ({marks})", tuple(ids))
        return {deployment.id: deployment for deployment in found}

    def history(
        self, service: str | None = None, limit: int = 20, before: str | None = None
    ) -> list[Deployment]:
        """Newest first, optionally for one service, optionally older than deployment
        `before` (a page cursor; an unknown id gives nothing: callers check it first)."""
        clause, params = _history_clause(service, before)
        return self._select(f"{clause}ORDER BY {NEWEST_FIRST} LIMIT ?", (*params, limit))

    def history_marks(
        self, service: str | None = None, limit: int = 20, before: str | None = None
    ) -> list[Mark]:
        """What history() lists, in its order, as marks: one read of the index and the
        deployments' rows, no step rows."""
        clause, params = _history_clause(service, before)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, state, finished_at, error, (SELECT COUNT(*) FROM steps "  # noqa: S608
                f"WHERE deployment_id = deployments.id) FROM deployments {clause}"
                f"ORDER BY {NEWEST_FIRST} LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [
            Mark(row[0], DeploymentState(row[1]), _from_db(row[2]), row[3], row[4]) for row in rows
        ]

    def recent(self, services: Sequence[str], count: int) -> dict[str, list[Deployment]]:
        """The newest `count` deployments of each service, newest first, in one query
        (an index lookup per service, whatever the size of the history). Only the newest of
        each comes with its steps."""
        if not services:
            return {}
        names = ", ".join("(?)" for _ in services)
        found = self._load(
            f"WITH names(name) AS (VALUES {names}) "  # noqa: S608 (fixed clauses)
            "SELECT d.* FROM names JOIN deployments AS d ON d.id IN "
            "(SELECT id FROM deployments WHERE service = names.name "
            f"ORDER BY {NEWEST_FIRST} LIMIT ?) ORDER BY {NEWEST_FIRST}",
            (*services, count),
            steps_of=_newest_per_service,
        )
        grouped: dict[str, list[Deployment]] = {name: [] for name in services}
        for deployment in found:
            grouped[deployment.service].append(deployment)
        return grouped

    def in_state(self, *states: DeploymentState) -> list[Deployment]:
        """Deployments in any of these states, oldest first."""
        marks = ", ".join("?" * len(states))
        return self._select(
            f"WHERE state IN ({marks}) ORDER BY created_at, id",
            tuple(state.value for state in states),
        )

    def digests(self, service: str, succeeded_only: bool, limit: int = 100) -> list[str]:
        """Distinct digests deployments of service ran, newest first. (`+state`: read through
        the service's index; the state index would read every succeeded deployment.)"""
        states = ("succeeded",) if succeeded_only else ("succeeded", "failed", "skipped")
        marks = ", ".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                "SELECT digest FROM deployments "  # noqa: S608 (fixed clauses)
                f"WHERE service = ? AND digest IS NOT NULL AND +state IN ({marks}) "
                "GROUP BY digest ORDER BY MAX(COALESCE(finished_at, created_at)) DESC LIMIT ?",
                (service, *states, limit),
            ).fetchall()
        return [row["digest"] for row in rows]

    def newest_with(self, service: str, digests: Collection[str]) -> list[str]:
        """Ids of the newest succeeded deployment of service for each of these digests."""
        with self._lock:
            found = [
                self._db.execute(
                    "SELECT id FROM deployments WHERE service = ? AND digest = ? "  # noqa: S608
                    f"AND state = 'succeeded' ORDER BY {NEWEST_FIRST} LIMIT 1",
                    (service, digest),
                ).fetchone()
                for digest in digests
            ]
        return [row["id"] for row in found if row is not None]

    def prune(
        self,
        service: str,
        keep: int,
        older_than: datetime | None,
        protected: Collection[str] = (),
    ) -> int:
        """Delete the service's finished deployments beyond the newest `keep`, and those created
        before `older_than`; never a `protected` id or an unfinished one. Returns how many."""
        placeholders = ", ".join("?" * len(protected)) or "NULL"
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                doomed = [
                    row["id"]
                    for row in self._db.execute(
                        "SELECT id FROM deployments WHERE service = ? "  # noqa: S608
                        "AND state NOT IN ('queued', 'running') "
                        f"AND id NOT IN ({placeholders}) AND (id NOT IN (SELECT id FROM "
                        f"deployments WHERE service = ? ORDER BY {NEWEST_FIRST} LIMIT ?) "
                        "OR created_at < ?)",
                        (service, *protected, service, keep, _to_db(older_than) or ""),
                    )
                ]
                ids = [(deployment_id,) for deployment_id in doomed]
                self._db.executemany("DELETE FROM steps WHERE deployment_id = ?", ids)
                self._db.executemany("DELETE FROM deployments WHERE id = ?", ids)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if doomed:
                self._db.execute("PRAGMA incremental_vacuum")
        return len(doomed)

    def remember_adopted(self, container: ContainerInfo) -> None:
        """Keep a taken-over container (its service, address, digest and deployment)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO adopted VALUES (?, ?, ?, ?, ?)",
                (
                    container.id,
                    container.service,
                    container.address,
                    container.digest,
                    container.deployment,
                ),
            )

    def adopted(self) -> list[ContainerInfo]:
        """The taken-over containers, as remembered (their state is the engine's to tell)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM adopted").fetchall()
        return [
            ContainerInfo(
                id=row["container_id"],
                name="",
                service=row["service"],
                image="",
                digest=row["digest"],
                deployment=row["deployment_id"],
                address=row["address"],
                status="unknown",
                health=None,
                started_at=None,
            )
            for row in rows
        ]

    def forget_adopted(self, container_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM adopted WHERE container_id = ?", (container_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, where: str, params: tuple[Any, ...]) -> list[Deployment]:
        return self._load(f"SELECT * FROM deployments {where}", params)  # noqa: S608

    def _load(
        self,
        query: str,
        params: tuple[Any, ...],
        steps_of: Callable[[list[sqlite3.Row]], list[str]] | None = None,
    ) -> list[Deployment]:
        """Deployments the query selects (whole rows), with their steps (all, or those of
        the ids steps_of picks)."""
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
            ids = [row["id"] for row in rows] if steps_of is None else steps_of(rows)
            marks = ", ".join("?" * len(ids))
            step_rows = self._db.execute(
                f"SELECT * FROM steps WHERE deployment_id IN ({marks}) "  # noqa: S608
                "ORDER BY deployment_id, position",
                ids,
            ).fetchall()
        steps: dict[str, list[Step]] = {}
        for row in step_rows:
            steps.setdefault(row["deployment_id"], []).append(
                Step(
                    name=row["name"],
                    state=StepState(row["state"]),
                    started_at=_from_db(row["started_at"]),  # type: ignore[arg-type]
                    finished_at=_from_db(row["finished_at"]),
                    detail=row["detail"],
                )
            )
        return [_deployment(row, steps.get(row["id"], [])) for row in rows]


def _history_clause(service: str | None, before: str | None) -> tuple[str, list[str]]:
    """The WHERE clause (with a trailing space, or empty) and parameters of a history page."""
    where, params = [], []
    if service is not None:
        where.append("service = ?")
        params.append(service)
    if before is not None:
        where.append("(created_at, id) < (SELECT created_at, id FROM deployments WHERE id = ?)")
        params.append(before)
    return (f"WHERE {' AND '.join(where)} " if where else ""), params


def _newest_per_service(rows: list[sqlite3.Row]) -> list[str]:
    """Ids of the first row of each service (rows come newest first)."""
    seen: dict[str, str] = {}
    for row in rows:
        seen.setdefault(row["service"], row["id"])
    return list(seen.values())


def _deployment(row: sqlite3.Row, steps: list[Step]) -> Deployment:
    values = {column: row[column] for column in COLUMNS}
    for column in ("created_at", "started_at", "finished_at"):
        values[column] = _from_db(values[column])
    values["state"] = DeploymentState(values["state"])
    return Deployment(**values, steps=steps)


def _to_db(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, DeploymentState):
        return value.value
    return value


def _from_db(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
