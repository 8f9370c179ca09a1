"""The status page in a real browser: Debian's headless Chromium, loopback only.

The app runs on the fake engine (no Docker needed) behind waitress on 127.0.0.1; Chromium
renders it, we read the DOM it built and save screenshots (phone and desktop) as artifacts in
test-artifacts/. Chromium's networking is off except loopback: every host name resolves to
nothing but 127.0.0.1, and any other address goes to a dead proxy.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
import waitress
from flask import Flask

from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, API_IMAGE, SERVICES, WEB_IMAGE, make_config
from tests.fakes import FakeBackend

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
V1, V2, V3 = ("sha256:" + digit * 64 for digit in "123")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",  # loopback is never proxied; everything else goes nowhere
]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("DEPLOYER_REQUIRE_BROWSER") == "1":
            pytest.fail("DEPLOYER_REQUIRE_BROWSER=1 but chromium is not installed")
        pytest.skip("the browser test needs Debian's chromium")
    return found


def finished(runtime: Runtime, deployment_id: str) -> bool:
    found = runtime.store.get(deployment_id)
    return found is not None and found.state.finished


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def served(make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend) -> Iterator[str]:
    """web: v1 then a failed v2; api: a deployment stuck in `healthy`; on 127.0.0.1."""
    slow_api = {**SERVICES["api"], "health": {"timeout": 60, "interval": 0.05}}
    services = {**SERVICES, "api": slow_api}
    app = make_app(make_config(tmp_path, services=services))
    runtime: Runtime = app.extensions["deployer"]
    runtime.start()
    client = app.test_client()
    for digest, behaviour in ((V1, "serve"), (V2, "exit")):
        backend.push(WEB_IMAGE, "latest", digest, behaviour)
        queued: str = client.post("/services/web/deploy", headers=AUTH).json["id"]  # type: ignore[index]
        wait_until(partial(finished, runtime, queued), "web deployed")
    backend.push(API_IMAGE, "latest", V3, "silent")
    client.post("/services/api/deploy", headers=AUTH)
    wait_until(lambda: runtime.queue.running("api") is not None, "api deploying")
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


def run_chromium(chromium: str, profile: Path, *args: str) -> str:
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_a_person_sees_every_service_its_state_and_what_went_wrong(
    chromium: str, served: str, tmp_path: Path
) -> None:
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", f"{served}/")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))

    assert "web failed" in text  # the newest web deployment failed ...
    assert "container web-" in text
    assert "health running" in text
    assert "exited (status 3) before it was healthy" in text
    # An anonymous visitor: the container's log lines (which may hold secrets) are not shown.
    assert "fatal: cannot read" not in text
    assert "api deploying" in text
    assert "healthy running…" in text
    assert "refreshes every 2 s" in text
    # Each card's last deployment as a bar of its steps, widths summing to the whole bar.
    bars = re.findall(r'<div class="timeline"[^>]*>(.*?)</div>', dom, flags=re.S)
    assert len(bars) == 2, dom
    for bar in bars:
        widths = [float(width) for width in re.findall(r"width: ([0-9.]+)%", bar)]
        assert len(widths) >= 4
        assert abs(sum(widths) - 100) < 0.1
    assert any('class="failed"' in bar and ">healthy " in bar for bar in bars)
    assert any('class="running"' in bar and ">healthy running…<" in bar for bar in bars)

    ARTIFACTS.mkdir(exist_ok=True)
    for name, size in (("status-page-phone", "412,1400"), ("status-page-desktop", "1280,1000")):
        shot = ARTIFACTS / f"{name}.png"
        shot.unlink(missing_ok=True)
        run_chromium(
            chromium,
            tmp_path / "profile",
            f"--window-size={size}",
            f"--screenshot={shot}",
            f"{served}/",
        )
        assert png_size(shot) == tuple(int(part) for part in size.split(","))
        assert shot.stat().st_size > 10_000  # a rendered page, not a blank one


def test_a_deployment_page_opens_as_html_in_the_browser(
    chromium: str, served: str, tmp_path: Path
) -> None:
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", f"{served}/")
    link = re.search(r'href="(/deployments/[0-9a-f]{12})"', dom)
    assert link is not None

    page = run_chromium(chromium, tmp_path / "profile", "--dump-dom", served + link.group(1))

    assert "<table>" in page
    assert re.search(r"deployment <code>[0-9a-f]{12}</code> of (web|api)", page)
    assert '<div class="timeline"' in page
