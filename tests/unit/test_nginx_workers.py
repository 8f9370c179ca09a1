"""Reload confirmation: reading nginx's workers from a /proc tree (a fake one, built here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deployer.errors import NginxError
from deployer.nginx_workers import (
    Workers,
    holds_listener,
    in_flight,
    listening_inodes,
    snapshot,
    still_accepting,
    wait_for_reload,
    worker_titles,
)

MASTER = 100
LISTENER = 5001  # the inode of nginx's listening socket
UNIX = """Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 5003 /run/nginx.sock
0000000000000000: 00000003 00000000 00000000 0001 03 5004
"""


def add_process(
    proc: Path,
    pid: int,
    parent: int,
    title: str,
    comm: str = "nginx",
    sockets: tuple[int, ...] = (),
    state: str = "S",
) -> None:
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    (entry / "stat").write_text(f"{pid} ({comm}) {state} {parent} {pid} {pid} 0 -1 4194560\n")
    (entry / "cmdline").write_bytes(title.replace(" ", "\0").encode() + b"\0")
    (entry / "fd").mkdir()
    for number, inode in enumerate(sockets, start=3):
        (entry / "fd" / str(number)).symlink_to(f"socket:[{inode}]")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    # the master holds the listeners (a TCP one, a unix one) and its channel to the worker
    add_process(
        root,
        MASTER,
        1,
        "nginx: master process nginx -c /etc/nginx/nginx.conf",
        sockets=(LISTENER, 5003, 5004),
    )
    (root / str(MASTER) / "net").mkdir()
    (root / str(MASTER) / "net" / "unix").write_text(UNIX)
    add_process(root, 101, MASTER, "nginx: worker process", sockets=(LISTENER, 5003, 5004))
    add_process(root, 102, MASTER, "nginx: cache manager process")
    add_process(root, 200, 1, "nginx: worker process")  # another nginx's worker
    add_process(root, 300, 1, "odd", comm="a) S 100 (b")  # hostile comm, parent 1
    (root / "self").mkdir()
    return root


def test_listening_sockets_are_the_masters_sockets_but_its_channels(proc: Path) -> None:
    # 5004 is a unix socket that does not listen (the master's channel to a worker): not one
    assert listening_inodes(MASTER, proc) == {LISTENER, 5003}


def test_a_channel_closed_while_the_masters_fds_are_read_is_not_taken_for_a_listener(
    proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker from an earlier reload exits while we look: the master closes its channel
    # (5004) after its fd was read, so the channel is gone from net/unix read afterwards.
    listdir = os.listdir
    unix = proc / str(MASTER) / "net" / "unix"

    def listing(path: str | Path) -> list[str]:
        names = listdir(path)
        if Path(path) == proc / str(MASTER) / "fd":
            unix.write_text("".join(line for line in UNIX.splitlines(True) if "5004" not in line))
        return names

    monkeypatch.setattr(os, "listdir", listing)

    assert listening_inodes(MASTER, proc) == {LISTENER, 5003}


def test_worker_titles_lists_only_this_masters_workers(proc: Path) -> None:
    assert worker_titles(MASTER, proc) == {101: "nginx: worker process"}


def test_a_worker_that_exited_but_is_not_reaped_yet_is_no_worker(proc: Path) -> None:
    # a zombie: its title reads empty and it holds nothing; it sent its last response
    add_process(proc, 104, MASTER, "", state="Z")

    assert worker_titles(MASTER, proc) == {101: "nginx: worker process"}
    replaced = Workers(MASTER, {101: "nginx: worker process", 104: ""}, frozenset({LISTENER}))
    assert in_flight(replaced, MASTER, proc).workers == (101,)


def test_a_worker_forked_a_moment_ago_counts_though_it_has_the_masters_title(proc: Path) -> None:
    add_process(proc, 104, MASTER, "nginx: master process nginx -c /etc/nginx/nginx.conf")

    assert sorted(worker_titles(MASTER, proc)) == [101, 104]


BEFORE = Workers(MASTER, {101: "nginx: worker process"}, frozenset({LISTENER}))


@pytest.mark.parametrize(
    ("now", "holds", "expected"),
    [
        # fds readable: the sockets decide, whatever the title says
        ({101: "nginx: worker process"}, True, ([101], False)),
        ({101: "nginx: worker process is shutting down"}, True, ([101], False)),
        ({101: "nginx: worker process is shutting down"}, False, ([], False)),
        ({103: "nginx: worker process"}, True, ([], False)),  # 101 exited
        # fds unreadable (another user): the title decides, and a settle is due
        ({101: "nginx: worker process"}, None, ([101], True)),
        ({101: "nginx: worker process is shutting down"}, None, ([], True)),
    ],
)
def test_still_accepting(
    now: dict[int, str], holds: bool | None, expected: tuple[list[int], bool]
) -> None:
    assert still_accepting(BEFORE, now, lambda pid: holds) == expected


def test_wait_returns_as_soon_as_the_old_workers_closed_their_listeners(proc: Path) -> None:
    before = snapshot_of(proc)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # the master got to it on the second look
            (proc / "101" / "cmdline").write_bytes(b"nginx: worker process is shutting down\0")
            (proc / "101" / "fd" / "3").unlink()
            (proc / "101" / "fd" / "4").unlink()
            add_process(proc, 103, MASTER, "nginx: worker process", sockets=(LISTENER,))

    wait_for_reload(before, timeout=5, proc=proc, sleep=sleep)

    assert len(sleeps) == 2  # two polls; no settle pause: the sockets are known closed


def test_a_worker_with_a_new_title_but_its_listener_still_open_is_waited_for(proc: Path) -> None:
    before = snapshot_of(proc)
    (proc / "101" / "cmdline").write_bytes(b"nginx: worker process is shutting down\0")
    looks: list[float] = []

    def sleep(seconds: float) -> None:
        looks.append(seconds)
        if len(looks) == 3:
            (proc / "101" / "fd" / "3").unlink()
            (proc / "101" / "fd" / "4").unlink()

    wait_for_reload(before, timeout=5, proc=proc, sleep=sleep)

    assert len(looks) == 3


def test_wait_fails_naming_the_workers_when_nginx_never_applies(proc: Path) -> None:
    before = snapshot_of(proc)

    with pytest.raises(NginxError, match=r"did not apply the reload within 0 s: worker\(s\) 101"):
        wait_for_reload(before, timeout=0, proc=proc, sleep=lambda _: None)


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


def test_snapshot_notes_the_fd_where_workers_hold_the_first_listener(proc: Path) -> None:
    # workers inherit the master's fds at the same numbers: fd 3 is LISTENER in both
    assert snapshot_of(proc).probe == 3


CONNECTIONS = tuple(range(6000, 6300))  # a busy worker's client and upstream sockets


def count_readlinks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    readlink = os.readlink

    def counting(path: str | Path) -> str:
        read.append(str(path))
        return str(readlink(path))

    monkeypatch.setattr(os, "readlink", counting)
    return read


def test_a_worker_that_still_listens_is_told_by_one_readlink(
    proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_process(proc, 105, MASTER, "nginx: worker process", sockets=(LISTENER, *CONNECTIONS))
    read = count_readlinks(monkeypatch)

    assert holds_listener(105, frozenset({LISTENER}), proc, probe=3) is True
    assert read == [str(proc / "105" / "fd" / "3")]


def test_a_worker_whose_probe_fd_is_no_listener_is_read_until_its_first_listener(
    proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fd 3 is a connection (e.g. reuseport: the worker closed the other workers' sockets)
    add_process(proc, 105, MASTER, "nginx: worker process", sockets=(*CONNECTIONS, LISTENER))
    read = count_readlinks(monkeypatch)

    assert holds_listener(105, frozenset({LISTENER}), proc, probe=3) is True
    assert len(read) <= len(CONNECTIONS) + 2  # the probe, then at most every fd once


def test_a_worker_that_closed_its_listeners_is_read_in_full(proc: Path) -> None:
    add_process(proc, 105, MASTER, "nginx: worker process is shutting down", sockets=CONNECTIONS)

    assert holds_listener(105, frozenset({LISTENER}), proc, probe=3) is False
    assert holds_listener(106, frozenset({LISTENER}), proc, probe=3) is False  # exited


def test_each_poll_of_a_worker_that_still_listens_reads_one_fd(
    proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_process(proc, 105, MASTER, "nginx: worker process", sockets=(LISTENER, *CONNECTIONS))
    before = snapshot_of(proc)
    (proc / "101" / "stat").unlink()  # exited: only 105 is left to watch
    read = count_readlinks(monkeypatch)
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 3:
            (proc / "105" / "stat").unlink()

    wait_for_reload(before, timeout=5, proc=proc, sleep=sleep)

    assert len(read) == len(polls) == 3


def snapshot_of(proc: Path) -> Workers:
    pid_file = proc.parent / "nginx.pid"
    pid_file.write_text(f"{MASTER}\n")
    return snapshot(pid_file, proc)


def test_in_flight_is_the_replaced_workers_still_alive(proc: Path) -> None:
    replaced = snapshot_of(proc)  # worker 101 was replaced by the switch's reload
    add_process(proc, 103, MASTER, "nginx: worker process")  # the new worker

    busy = in_flight(replaced, MASTER, proc)
    assert (busy.workers, busy.done) == ((101,), False)

    (proc / "101" / "stat").unlink()  # it finished its last request and exited
    assert in_flight(replaced, MASTER, proc).done


def test_not_knowing_the_replaced_workers_every_one_shutting_down_counts(proc: Path) -> None:
    (proc / "101" / "cmdline").write_bytes(b"nginx: worker process is shutting down\0")
    add_process(proc, 103, MASTER, "nginx: worker process")

    assert in_flight(None, MASTER, proc).workers == (101,)
