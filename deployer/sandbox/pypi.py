"""Python packages for sandbox builds, fetched once per machine with this host's pip.

- `wheelhouse()`: the wheels of requirements.txt and of the build system, in a cached folder
  with a PEP 503 index. `LocalIndex` serves it on 127.0.0.1 so that `docker build --network
  host --build-arg PIP_INDEX_URL=...` installs from it: pip inside an image has neither this
  host's pip configuration nor its CA certificates.
- `cached_venv()`: a virtualenv with requirements.txt installed, keyed by its hash.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from types import TracebackType

from deployer.sandbox.cache import CACHE_DIR, locked, recipe_key
from deployer.sandbox.net import LOOPBACK

COMPLETE = ".complete"
INDEX_PORTS = range(16100, 16900)  # below the test port blocks (20000+) and the demo's


def build_requires(pyproject: Path) -> list[str]:
    """[build-system] requires of a pyproject.toml (what `pip install .` builds with)."""
    requires: list[str] = tomllib.loads(pyproject.read_text())["build-system"]["requires"]
    return requires


def project_name(wheel: str) -> str:
    """The normalised project name of a wheel file name (PEP 503), e.g. 'prometheus-client'."""
    return re.sub(r"[-_.]+", "-", wheel.split("-", 1)[0]).lower()


def write_simple_index(directory: Path) -> None:
    """simple/<project>/index.html linking every wheel in directory (pure file output)."""
    projects: dict[str, list[str]] = {}
    for wheel in sorted(directory.glob("*.whl")):
        projects.setdefault(project_name(wheel.name), []).append(wheel.name)
    for project, files in projects.items():
        page = directory / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="../../{name}">{name}</a><br>\n' for name in files)
        page.write_text(f"<!doctype html>\n<html><body>\n{links}</body></html>\n")


def wheelhouse(requirements: Path, extra: list[str], workdir: Path = CACHE_DIR) -> Path:
    """A folder with the wheels of requirements + extra and their index; downloaded once."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = recipe_key(requirements.read_bytes(), *extra, python)
    directory = workdir / f"wheels-{key}"
    with locked(f"wheels-{key}", workdir):
        if (directory / COMPLETE).exists():
            return directory
        shutil.rmtree(directory, ignore_errors=True)
        _pip(
            "download", "--quiet", "--only-binary=:all:", "--dest", str(directory),
            "-r", str(requirements), *extra,
        )  # fmt: skip
        write_simple_index(directory)
        (directory / COMPLETE).touch()
    return directory


def cached_venv(requirements: Path, workdir: Path = CACHE_DIR) -> Path:
    """A virtualenv (made by this Python's base interpreter) with requirements installed."""
    python = Path(sys.base_prefix) / "bin" / "python3"
    key = recipe_key(requirements.read_bytes(), str(python), sys.version)
    venv = workdir / f"venv-{key}"
    with locked(f"venv-{key}", workdir):
        if (venv / COMPLETE).exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        _run([str(python), "-m", "venv", str(venv)])
        _run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(requirements)])
        (venv / COMPLETE).touch()
    return venv


def stable_port(directory: Path) -> int:
    """The port a wheelhouse is served on, the same every run (pure).

    The index URL is a `docker build` argument, and a build argument with another value than
    last time makes Docker rebuild every RUN step: with a new port per run nothing is cached.
    """
    return INDEX_PORTS.start + int(recipe_key(str(directory)), 16) % len(INDEX_PORTS)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


class LocalIndex:
    """A wheelhouse served as a package index on a 127.0.0.1 port, while inside `with`."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        try:
            self._server = http.server.ThreadingHTTPServer(
                (LOOPBACK, stable_port(directory)), handler
            )
        except OSError:  # taken: any port works, only `docker build`'s cache is missed
            self._server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def build_args(self) -> dict[str, str]:
        """The pip settings (Dockerfile ARGs) that make pip install from this index only."""
        return {
            "PIP_INDEX_URL": f"http://{LOOPBACK}:{self.port}/simple/",
            "PIP_TRUSTED_HOST": f"{LOOPBACK}:{self.port}",
        }

    def __enter__(self) -> LocalIndex:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _pip(*args: str) -> None:
    _run([sys.executable, "-m", "pip", *args])


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {result.returncode}: {output}")
