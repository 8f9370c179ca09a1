"""python -m deployer.sandbox engine | base-image

engine: make sure a Docker engine answers (start dockerd if not).
base-image: build deployer-base:bookworm with debootstrap unless this recipe's image exists.
"""

from __future__ import annotations

import sys

from deployer.sandbox.base_image import BASE_IMAGE, BaseImageError, ensure_base_image
from deployer.sandbox.engine import SANDBOX_DIR, EngineUnavailable, ensure_engine

USAGE = "usage: python -m deployer.sandbox engine | base-image\n"


def main(argv: list[str]) -> int:
    if argv == ["engine"]:
        try:
            how = ensure_engine(SANDBOX_DIR / "dockerd.log")
        except EngineUnavailable as err:
            sys.stderr.write(f"sandbox: {err}\n")
            return 1
        sys.stdout.write(f"sandbox: Docker engine {how}\n")
        return 0
    if argv == ["base-image"]:
        try:
            how = ensure_base_image()
        except BaseImageError as err:
            sys.stderr.write(f"sandbox: {err}\n")
            return 1
        sys.stdout.write(f"sandbox: {BASE_IMAGE} {how}\n")
        return 0
    sys.stderr.write(USAGE)
    return 2


raise SystemExit(main(sys.argv[1:]))
