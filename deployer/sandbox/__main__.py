"""python -m deployer.sandbox engine: make sure a Docker engine answers (start dockerd if not)."""

from __future__ import annotations

import sys

from deployer.sandbox.engine import SANDBOX_DIR, EngineUnavailable, ensure_engine


def main(argv: list[str]) -> int:
    if argv != ["engine"]:
        sys.stderr.write("usage: python -m deployer.sandbox engine\n")
        return 2
    try:
        how = ensure_engine(SANDBOX_DIR / "dockerd.log")
    except EngineUnavailable as err:
        sys.stderr.write(f"sandbox: {err}\n")
        return 1
    sys.stdout.write(f"sandbox: Docker engine {how}\n")
    return 0


raise SystemExit(main(sys.argv[1:]))
