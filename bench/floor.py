"""The floor: the unavoidable parts of a switch, done directly and timed one by one.

Pull the new image, `docker run` it on a new port and poll it until the first 200, point
nginx's upstream there, `nginx -t`, reload and watch nginx's workers (deployer's
nginx_workers) until the old ones stop accepting. No webhook, no queue, no health interval,
no drain: what is left is what any tool has to wait for on this machine. Then the old
container is stopped (its "finished").
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.acks import Probe
from bench.rounds import Finish
from bench.testbed import SERVICE, docker, render_fixed_upstream, run_argv, start_fixed_nginx
from deployer.nginx_workers import snapshot, wait_for_reload
from deployer.sandbox import ImageFactory, SandboxNginx, free_port
from deployer.sandbox.net import LOOPBACK, http_get

FLOOR_PARTS = ("pull", "run to 200", "nginx -t", "reload")
POLL = 0.002  # seconds between polls: fine enough not to add to what is measured


class FloorStack:
    """Blue/green by hand between two ports, timing each part."""

    name = "floor"
    app = "floor"

    def __init__(self, scratch: Path, images: ImageFactory, instance: str) -> None:
        self.directory = scratch / "floor"
        self.image = f"{images.repository(self.app)}:latest"
        self.instance = instance
        self.ports = (free_port(), free_port())
        self.side = 0  # the next container runs on ports[side], named ...-floor-<side>
        self.serving: str | None = None  # the container nginx sends traffic to
        self.nginx: SandboxNginx | None = None
        self._finished: dict[str, Finish] = {}

    def start(self) -> FloorStack:
        self.nginx = start_fixed_nginx(self.directory / "nginx", self.ports[0])
        return self

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()

    def url(self) -> str:
        assert self.nginx is not None, "start() first"
        return self.nginx.url(SERVICE, "/version")

    def probe(self) -> Probe | None:
        return None  # nothing to acknowledge: the floor has no webhook

    def trigger(self, label: str) -> None:
        """Do the whole switch now; finish() returns its times."""
        assert self.nginx is not None, "start() first"
        port, container = self.ports[self.side], f"{self.instance}-floor-{self.side}"
        self.side = 1 - self.side
        marks = [time.time()]
        docker("pull", "--quiet", self.image)
        marks.append(time.time())
        run_until_answering(self.image, container, port, self.instance)
        marks.append(time.time())
        self.nginx.upstreams.write_text(render_fixed_upstream(port))
        test_nginx(self.nginx)
        marks.append(time.time())
        reload_and_confirm(self.nginx)
        marks.append(time.time())
        old, self.serving = self.serving, container
        if old is not None:
            docker("rm", docker("stop", old).strip())
        parts = {name: marks[i + 1] - marks[i] for i, name in enumerate(FLOOR_PARTS)}
        parts["floor"] = marks[-1] - marks[0]
        self._finished[label] = Finish(time.time(), "succeeded", parts)

    def finish(self, label: str) -> Finish:
        return self._finished.pop(label)


def run_until_answering(image: str, container: str, port: int, instance: str) -> None:
    """docker run the app on host networking and poll it until GET /version answers 200."""
    docker(*run_argv(image, container, port, instance)[1:])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http_get(f"http://{LOOPBACK}:{port}/version", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(POLL)
    raise TimeoutError(f"floor: container {container} did not answer on port {port} in 30 s")


def test_nginx(nginx: SandboxNginx) -> None:
    """nginx -t on the new file; RuntimeError with its output when it fails."""
    result = subprocess.run(nginx.test_argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"floor: nginx -t failed: {result.stderr.strip()}")


def reload_and_confirm(nginx: SandboxNginx, timeout: float = 10.0) -> None:
    """nginx -s reload, then wait until no worker from before still accepts: the same check
    deployer makes (old workers' listening sockets closed), the least a reload takes."""
    before = snapshot(nginx.pid_file)
    subprocess.run(nginx.reload_argv, capture_output=True, check=True)
    wait_for_reload(before, timeout)
