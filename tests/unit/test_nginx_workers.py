"""Reload confirmation: reading nginx's workers from a /proc tree (a fake one, built here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import NginxError
from deployer.nginx_workers import (
    Workers,
    in_flight,
    listening_inodes,
    snapshot,
    still_accepting,
    wait_for_reload,
    worker_titles,
)

MASTER = 100
LISTENER = 5001  # the inode of nginx's listening socket
TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  inode
   0: 0100007F:4650 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1
   1: 0100007F:4650 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 5002 1
"""
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
) -> None:
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    (entry / "stat").write_text(f"{pid} ({comm}) S {parent} {pid} {pid} 0 -1 4194560\n")
    (entry / "cmdline").write_bytes(title.replace(" ", "\0").encode() + b"\0")
    (entry / "fd").mkdir()
    for number, inode in enumerate(sockets, start=3):
        (entry / "fd" / str(number)).symlink_to(f"socket:[{inode}]")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    add_process(root, MASTER, 1, "nginx: master process nginx -c /etc/nginx/nginx.conf")
    (root / str(MASTER) / "net").mkdir()
    (root / str(MASTER) / "net" / "tcp").write_text(TCP)
    (root / str(MASTER) / "net" / "unix").write_text(UNIX)
    add_process(root, 101, MASTER, "nginx: worker process", sockets=(LISTENER, 5002))
    add_process(root, 102, MASTER, "nginx: cache manager process")
    add_process(root, 200, 1, "nginx: worker process")  # another nginx's worker
    add_process(root, 300, 1, "odd", comm="a) S 100 (b")  # hostile comm, parent 1
    (root / "self").mkdir()
    return root


def test_listening_sockets_are_read_from_the_masters_network_tables(proc: Path) -> None:
    assert listening_inodes(MASTER, proc) == {LISTENER, 5003}


def test_worker_titles_lists_only_this_masters_workers(proc: Path) -> None:
    assert worker_titles(MASTER, proc) == {101: "nginx: worker process"}


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


def snapshot_of(proc: Path) -> Workers:
    pid_file = proc.parent / "nginx.pid"
    pid_file.write_text(f"{MASTER}\n")
    return snapshot(pid_file, proc)


def test_in_flight_counts_old_workers_still_alive_and_connections_to_the_old_address(
    proc: Path,
) -> None:
    replaced = snapshot_of(proc)  # worker 101 was replaced by the switch's reload
    # 5002 is a connection from nginx (port 0x9C40) to 127.0.0.1:0x4650 = 18000, established
    tcp = proc / str(MASTER) / "net" / "tcp"
    tcp.write_text(
        TCP
        + "   2: 0100007F:9C41 0100007F:4650 01 00000000:00000000 00:00000000 00000000 0 0 5005 1\n"
        + "   3: 0100007F:9C42 0100007F:4650 06 00000000:00000000 00:00000000 00000000 0 0 0 1\n"
    )

    busy = in_flight(replaced, ["127.0.0.1:18000"], MASTER, proc)
    assert (busy.workers, busy.connections, busy.done) == ((101,), 1, False)

    (proc / "101" / "stat").unlink()  # the old worker finished its last request and exited
    tcp.write_text(TCP)
    idle = in_flight(replaced, ["127.0.0.1:18000"], MASTER, proc)
    assert (idle.workers, idle.connections, idle.done) == ((), 0, True)


def test_connections_to_other_ports_do_not_count(proc: Path) -> None:
    assert in_flight(None, ["127.0.0.1:18001"], MASTER, proc).connections == 0
