"""The peers' tools, installed by the bench (never by deployer's scripts): Debian packages."""

from __future__ import annotations

import os
import shutil
import subprocess

PEER_PACKAGES = {"webhook": "webhook", "docker-compose": "docker-compose"}  # command: package


def missing_packages(commands: dict[str, str]) -> list[str]:
    """The packages whose command is not on PATH."""
    return sorted(package for command, package in commands.items() if shutil.which(command) is None)


def ensure_packages(commands: dict[str, str] = PEER_PACKAGES) -> None:
    """apt-get install the packages whose command is missing (apt-get update on a first miss)."""
    missing = missing_packages(commands)
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"{', '.join(missing)} missing: run as root (apt-get install) or install")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(install, env=environment, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=environment, check=True)
        subprocess.run(install, env=environment, check=True)
