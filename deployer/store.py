"""Deployment history in SQLite under state_dir: every deployment and each of its steps."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

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
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS deployments_by_service ON deployments (service, created_at);
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
"""
COLUMNS = (
    "id service trigger image tag state digest requested_digest previous_digest container "
    "error logs created_at started_at finished_at"
).split()
ADDED_COLUMNS = {"logs": "TEXT"}  # columns newer than the first schema, added to old databases


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
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            present = {row["name"] for row in self._db.execute("PRAGMA table_info(deployments)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE deployments ADD COLUMN {column} {kind}")

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
                self._db.execute(
                    f"INSERT OR REPLACE INTO deployments ({', '.join(COLUMNS)}) "  # noqa: S608
                    f"VALUES ({', '.join('?' * len(COLUMNS))})",
                    row,
                )
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

    def history(self, service: str | None = None, limit: int = 20) -> list[Deployment]:
        """Newest first, optionally for one service."""
        if service is None:
            return self._select("ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
        return self._select(
            "WHERE service = ? ORDER BY created_at DESC, rowid DESC LIMIT ?", (service, limit)
        )

    def in_state(self, *states: DeploymentState) -> list[Deployment]:
        """Deployments in any of these states, oldest first."""
        marks = ", ".join("?" * len(states))
        return self._select(
            f"WHERE state IN ({marks}) ORDER BY created_at, rowid",
            tuple(state.value for state in states),
        )

    def last_finished(self, service: str) -> Deployment | None:
        """The newest deployment of service that ended succeeded or failed."""
        found = self._select(
            "WHERE service = ? AND state IN ('succeeded', 'failed') "
            "ORDER BY finished_at DESC, rowid DESC LIMIT 1",
            (service,),
        )
        return found[0] if found else None

    def digests(self, service: str, succeeded_only: bool, limit: int = 100) -> list[str]:
        """Distinct digests deployments of service ran, newest first."""
        states = ("succeeded",) if succeeded_only else ("succeeded", "failed", "skipped")
        marks = ", ".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                "SELECT digest FROM deployments "  # noqa: S608 (fixed clauses)
                f"WHERE service = ? AND digest IS NOT NULL AND state IN ({marks}) "
                "GROUP BY digest ORDER BY MAX(COALESCE(finished_at, created_at)) DESC LIMIT ?",
                (service, *states, limit),
            ).fetchall()
        return [row["digest"] for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, where: str, params: tuple[Any, ...]) -> list[Deployment]:
        with self._lock:
            query = f"SELECT rowid, * FROM deployments {where}"  # noqa: S608 (fixed clauses)
            rows = self._db.execute(query, params).fetchall()
            ids = [row["id"] for row in rows]
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
