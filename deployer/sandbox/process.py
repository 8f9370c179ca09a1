"""Start and stop a sandbox server process, with its output kept in a log file."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self


class StartStop:
    """`with thing:` starts it (start() returns it) and stops it afterwards, pass or fail."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        started: Self = self.start()
        return started

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.leave()

    def leave(self) -> None:
        """After the `with` block's stop(): what goes only when the thing goes for good (a
        stop() alone may be followed by start())."""


class SandboxProcess:
    """A child process with its combined output in log_path.

    With `own_session` it leads a session of its own, as a service manager starts a service
    (the benchmarks' servers): with the kernel's per-session CPU grouping (autogroup, on
    unless sched_autogroup_enabled=0, in effect outside cgroups with a CPU controller) a child
    in the parent's session shares one CPU share with the parent and everything else it
    started, such as a bench's load generator, instead of competing on its own. Measured on the
    bench machine: deployer's webhook answer p99 under load 24-32 ms in the bench's session,
    15-18 ms in its own. Such a child no longer gets the signals sent to the parent's process
    group (a terminal's Ctrl-C, `timeout`, `kill -- -PGID`): stop() ends it and everything it
    started. Without, it stays in the parent's session and process group (the tests' servers:
    they die with the run however it ends).
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        environ: Mapping[str, str] | None = None,
        own_session: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.environ = environ
        self.own_session = own_session
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process; its output goes to the log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=self.environ,
                start_new_session=self.own_session,
            )

    @property
    def pid(self) -> int | None:
        """The child's process id once started."""
        return None if self._process is None else self._process.pid

    def check_alive(self) -> None:
        """Raise RuntimeError with the log tail when the process has exited."""
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self._process.returncode}: {self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process and wait for it; kill it if it lingers. A process leading its
        own session is signalled with its whole process group (what it started goes too)."""
        if self._process is None or self._process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._process.wait(timeout)
        if self.own_session:
            self._signal(signal.SIGKILL)  # anything of its group still there

    def _signal(self, number: signal.Signals) -> None:
        assert self._process is not None
        try:
            if self.own_session:
                os.killpg(self._process.pid, number)
            else:
                self._process.send_signal(number)
        except ProcessLookupError:
            pass
