"""The wheel: built with `pip wheel .`, installed in a fresh virtualenv, run outside the checkout.

The HTML pages and the nginx template must come from the installed package: the config and the
working directory are in a temporary folder and PYTHONPATH is cleared, so nothing is found in
the repository by accident. The virtualenv with the pinned requirements is cached per machine,
keyed by requirements.txt; the wheel is built and installed into it on every run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from deployer.sandbox.cache import locked
from deployer.sandbox.net import free_port, wait_for_http
from deployer.sandbox.pypi import cached_venv
from tests.conftest import TOKEN

pytestmark = pytest.mark.integration  # `deployer serve` lists its containers on the engine
REPOSITORY = Path(__file__).resolve().parents[2]
NOT_SOURCE = (".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deployer's wheel, built with `pip wheel . --no-deps` in a clean copy of the repository.

    setuptools builds in the source tree and never empties its build/ folder: a module deleted
    since the last build would still be packaged. The copy also leaves the checkout untouched.
    """
    source = tmp_path_factory.mktemp("source") / "deployer"
    shutil.copytree(REPOSITORY, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), "."],
        cwd=source,
        capture_output=True,
        check=True,
    )
    [built] = dist.glob("deployer-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Iterator[Path]:
    """A virtualenv with the pinned requirements and this wheel (held for the module's tests)."""
    venv = cached_venv(REPOSITORY / "requirements.txt")
    with locked(venv.name):  # another run may install its own wheel into the same venv
        pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", "--force-reinstall"]
        subprocess.run([*pip, str(wheel)], capture_output=True, check=True)
        yield venv


def test_the_wheel_holds_every_package_and_the_templates(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())

    packages = {
        f"{path.parent.relative_to(REPOSITORY).as_posix()}/__init__.py"
        for path in (REPOSITORY / "deployer").rglob("__init__.py")
    }
    templates = {
        f"deployer/{path.relative_to(REPOSITORY).as_posix()}"
        for path in (REPOSITORY / "templates").rglob("*")
        if path.is_file()
    }
    assert packages - names == set()
    assert templates - names == set()
    assert "deployer/templates/nginx/upstreams.conf.j2" in templates


def test_the_installed_wheel_serves_the_page_and_renders_nginx(
    venv: Path, instance: str, tmp_path: Path
) -> None:
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "instance": instance,
        "nginx": {"output": "nginx/upstreams.conf", "test": ["true"], "reload": ["true"]},
        "services": {"web": {"image": "127.0.0.1:9/acme/web", "ports": "30100-30101"}},
    }
    (tmp_path / "deployer.yml").write_text(yaml.safe_dump(config))
    environ = {**os.environ, "DEPLOYER_TOKEN": TOKEN}
    environ.pop("PYTHONPATH", None)
    deployer = str(venv / "bin" / "deployer")

    rendered = subprocess.run(
        [deployer, "render-nginx", "--config", "deployer.yml"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.startswith("# Written by deployer")
    assert "upstream web {\n    server 127.0.0.1:9 down;" in rendered.stdout

    process = subprocess.Popen(
        [deployer, "serve", "--config", "deployer.yml"],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=20)
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
    assert page.status_code == 200, output
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.text.startswith("<!doctype html>")
    assert "<title>deployer: 1 service</title>" in page.text
    assert "<h2>web " in page.text
    assert process.returncode == 0, output
    assert (tmp_path / "nginx" / "upstreams.conf").read_text() == rendered.stdout
    assert str(venv) in templates_found_by(venv, environ, tmp_path)


def templates_found_by(venv: Path, environ: dict[str, str], cwd: Path) -> str:
    """Where deployer in venv finds its templates."""
    code = "from deployer.resources import TEMPLATES; print(TEMPLATES)"
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()
