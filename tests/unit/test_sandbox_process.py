"""SandboxProcess starts its child the way a service manager starts a service."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from deployer.sandbox.process import SandboxProcess


def test_the_child_leads_a_session_of_its_own(tmp_path: Path) -> None:
    code = "import os, time; print(os.getpid(), os.getsid(0), flush=True); time.sleep(30)"
    log = tmp_path / "sleeper.log"
    child = SandboxProcess("sleeper", [sys.executable, "-c", code], log)
    child.start()
    try:
        deadline = time.monotonic() + 10
        while not log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        pid, session = log.read_text().split()
    finally:
        child.stop(timeout=5)
    # its own session, not this one: the kernel's per-session CPU grouping treats it apart
    assert session == pid
    assert int(session) != os.getsid(0)
