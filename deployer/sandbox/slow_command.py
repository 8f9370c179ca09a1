"""An argv that waits, then runs the real command: holds a step's window open (e.g. `nginx -t`).

deployer runs `nginx.test` and `nginx.reload` as argv lists. SlowCommand writes a tiny shell
script that notes each start in a file, sleeps `seconds`, then execs the real argv; put
`slow.argv` in the config in place of the real one::

    slow_test = SlowCommand(nginx.test_argv, seconds=3, directory=tmp_path, name="nginx-test")
    config["nginx"] = {**nginx.deployer_config(), "test": slow_test.argv}
    ...push a release...
    slow_test.wait_started()      # deployer's nginx step is inside `nginx -t` for ~3 s now
    serve.kill()
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from pathlib import Path

SCRIPT = """#!/bin/sh
# Written by deployer.sandbox.slow_command: note the start, wait (while armed), then run the
# real command.
echo "$$" >> {marker}
[ -e {armed} ] && sleep {seconds:g}
exec {argv} "$@"
"""


class SlowCommand:
    """A script that sleeps `seconds` then execs `argv`; `argv` is what to configure."""

    def __init__(
        self,
        argv: Sequence[str],
        seconds: float,
        directory: Path,
        name: str = "slow",
        armed: bool = True,
    ) -> None:
        if not argv:
            raise ValueError("SlowCommand needs the real command's argv")
        directory.mkdir(parents=True, exist_ok=True)
        self.script = directory.absolute() / f"{name}.sh"
        self.marker = directory.absolute() / f"{name}.started"
        self.flag = directory.absolute() / f"{name}.armed"
        self.seconds = seconds
        self.script.write_text(
            SCRIPT.format(
                marker=shlex.quote(str(self.marker)),
                armed=shlex.quote(str(self.flag)),
                seconds=seconds,
                argv=shlex.join(argv),
            )
        )
        if armed:
            self.arm()
        self.script.chmod(0o755)
        self.argv = [str(self.script)]

    def arm(self) -> None:
        """From now on each start waits `seconds` first."""
        self.flag.touch()

    def disarm(self) -> None:
        """From now on the real command runs at once (one waiting now keeps waiting)."""
        self.flag.unlink(missing_ok=True)

    def starts(self) -> int:
        """How many times the command has started so far."""
        try:
            return len(self.marker.read_text().split())
        except FileNotFoundError:
            return 0

    def wait_started(self, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until the command has started `count` times in all."""
        deadline = time.monotonic() + timeout
        while self.starts() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.script} started {self.starts()} of {count} times within {timeout:g} s"
                )
            time.sleep(0.02)
