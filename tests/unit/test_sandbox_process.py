"""SandboxProcess: a child in the run's session, or leading its own as a service would."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from deployer.sandbox.process import SandboxProcess

# prints its pid, its session and the pid of a grandchild it started, then waits
CODE = (
    "import os, subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(os.getpid(), os.getsid(0), child.pid, flush=True); time.sleep(60)"
)


def started(tmp_path: Path, own_session: bool) -> tuple[SandboxProcess, list[int]]:
    log = tmp_path / "child.log"
    child = SandboxProcess("child", [sys.executable, "-c", CODE], log, own_session=own_session)
    child.start()
    deadline = time.monotonic() + 10
    while not log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    return child, [int(word) for word in log.read_text().split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


@pytest.mark.parametrize("own_session", [True, False])
def test_the_child_leads_a_session_of_its_own_only_when_asked(
    tmp_path: Path, own_session: bool
) -> None:
    child, (pid, session, grandchild) = started(tmp_path, own_session)
    try:
        assert (session == pid) is own_session
        assert (session != os.getsid(0)) is own_session
    finally:
        child.stop(timeout=5)
        if not own_session and alive(grandchild):
            os.kill(grandchild, 9)


def test_stopping_a_session_leader_ends_what_it_started_too(tmp_path: Path) -> None:
    child, (_, _, grandchild) = started(tmp_path, own_session=True)
    assert alive(grandchild)

    child.stop(timeout=5)

    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(grandchild)
