"""Find a Docker engine that answers, or start Debian's dockerd on loopback-only terms."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# Where the sandbox keeps dockerd's log and other state that outlives one run.
SANDBOX_DIR = Path(
    os.environ.get("DEPLOYER_TESTBED_DIR") or Path(tempfile.gettempdir()) / "deployer-testbed"
)
DOCKERD_ARGV = ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false"]


class EngineUnavailable(RuntimeError):
    """No Docker engine answers and none could be started; the message says why."""


def engine_answers(timeout: float = 10.0) -> bool:
    """True when `docker version` reaches a daemon."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def ensure_engine(log_path: Path, wait_seconds: float = 60.0) -> str:
    """Return how the engine was found ('running' or 'started'); raise EngineUnavailable."""
    if engine_answers():
        return "running"
    if shutil.which("docker") is None:
        raise EngineUnavailable("the docker CLI is not installed (Debian package docker.io)")
    if shutil.which("dockerd") is None:
        raise EngineUnavailable("dockerd is not installed (Debian package docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers and starting dockerd needs root")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # left running on purpose: later runs reuse the engine
            DOCKERD_ARGV, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if engine_answers():
            return "started"
        if process.poll() is not None:
            raise EngineUnavailable(
                f"dockerd exited with status {process.returncode}; see {log_path}"
            )
        time.sleep(0.5)
    raise EngineUnavailable(f"dockerd did not answer within {wait_seconds:g} s; see {log_path}")


def remove_instance_containers(instance: str) -> None:
    """docker rm -f every container labelled deployer.instance=instance."""
    listing = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=deployer.instance={instance}"],
        capture_output=True,
        text=True,
        check=False,
    )
    ids = listing.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True, check=False)
