"""python -m deployer.sandbox engine: make sure a Docker engine answers (start dockerd if not)."""

from __future__ import annotations

import sys
from pathlib import Path

from deployer.sandbox.engine import EngineUnavailable, ensure_engine


def main(argv: list[str]) -> int:
    if argv != ["engine"]:
        sys.stderr.write("usage: python -m deployer.sandbox engine\n")
        return 2
    try:
        how = ensure_engine(Path("/tmp/deployer-testbed/dockerd.log"))
    except EngineUnavailable as err:
        sys.stderr.write(f"sandbox: {err}\n")
        return 1
    sys.stdout.write(f"sandbox: Docker engine {how}\n")
    return 0


raise SystemExit(main(sys.argv[1:]))
