"""Things the sandbox builds once per machine (base image, wheels, virtualenvs): keys and locks.

A cache entry is named by a hash of its recipe, so changing the recipe builds a new entry, and
built under an exclusive lock, so two test runs on one machine never build it at once.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deployer.sandbox.engine import SANDBOX_DIR

CACHE_DIR = SANDBOX_DIR / "cache"


def recipe_key(*parts: str | bytes) -> str:
    """A short, stable hash of everything that decides what gets built (pure)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:16]


@contextmanager
def locked(name: str, directory: Path = CACHE_DIR) -> Iterator[None]:
    """Hold the machine-wide lock `name` (a file in the cache directory) while inside."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
