"""Reload confirmation: reading nginx's workers from a /proc tree (a fake one, built here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import NginxError
from deployer.nginx_workers import snapshot, still_accepting, wait_for_reload, worker_titles

MASTER = 100


def add_process(proc: Path, pid: int, parent: int, title: str, comm: str = "nginx") -> None:
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    (entry / "stat").write_text(f"{pid} ({comm}) S {parent} {pid} {pid} 0 -1 4194560\n")
    (entry / "cmdline").write_bytes(title.replace(" ", "\0").encode() + b"\0")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    add_process(root, MASTER, 1, "nginx: master process nginx -c /etc/nginx/nginx.conf")
    add_process(root, 101, MASTER, "nginx: worker process")
    add_process(root, 102, MASTER, "nginx: cache manager process")
    add_process(root, 200, 1, "nginx: worker process")  # another nginx's worker
    add_process(root, 300, 1, "odd", comm="a) S 100 (b")  # hostile comm, parent 1
    (root / "self").mkdir()
    return root


def test_worker_titles_lists_only_this_masters_workers(proc: Path) -> None:
    assert worker_titles(MASTER, proc) == {101: "nginx: worker process"}


def test_a_worker_forked_a_moment_ago_counts_though_it_has_the_masters_title(proc: Path) -> None:
    add_process(proc, 104, MASTER, "nginx: master process nginx -c /etc/nginx/nginx.conf")

    assert sorted(worker_titles(MASTER, proc)) == [101, 104]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ({101: "nginx: worker process"}, [101]),
        ({101: "nginx: worker process is shutting down", 103: "nginx: worker process"}, []),
        ({103: "nginx: worker process"}, []),
    ],
)
def test_still_accepting(now: dict[int, str], expected: list[int]) -> None:
    assert still_accepting({101: "nginx: worker process"}, now) == expected


def test_wait_returns_once_old_workers_shut_down(proc: Path) -> None:
    master, before = snapshot_of(proc)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # the master got to it on the second look
            (proc / "101" / "cmdline").write_bytes(b"nginx: worker process is shutting down\0")
            add_process(proc, 103, MASTER, "nginx: worker process")

    wait_for_reload(master, before, timeout=5, proc=proc, sleep=sleep)

    assert len(sleeps) == 3  # two polls, then the settle pause


def test_wait_fails_naming_the_workers_when_nginx_never_applies(proc: Path) -> None:
    master, before = snapshot_of(proc)

    with pytest.raises(NginxError, match=r"did not apply the reload within 0 s: worker\(s\) 101"):
        wait_for_reload(master, before, timeout=0, proc=proc, sleep=lambda _: None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read nginx pid file"),
        ("garbage", "holds 'garbage', not a pid"),
        ("200\n", "names pid 200, which has no nginx worker processes"),
    ],
)
def test_snapshot_explains_a_bad_pid_file(
    proc: Path, tmp_path: Path, content: str | None, message: str
) -> None:
    pid_file = tmp_path / "nginx.pid"
    if content is not None:
        pid_file.write_text(content)

    with pytest.raises(NginxError, match=message):
        snapshot(pid_file, proc)


def snapshot_of(proc: Path) -> tuple[int, dict[int, str]]:
    pid_file = proc.parent / "nginx.pid"
    pid_file.write_text(f"{MASTER}\n")
    return snapshot(pid_file, proc)
