"""A real Docker registry (Debian's docker-registry) on a 127.0.0.1 port."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType

from deployer.sandbox.net import LOOPBACK, free_port, wait_for_http
from deployer.sandbox.process import SandboxProcess

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {address}
"""


class LocalRegistry:
    """docker-registry serving from state_dir; Docker trusts loopback registries without TLS."""

    def __init__(self, state_dir: Path, port: int | None = None) -> None:
        self.state_dir = state_dir
        self.port = port or free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self._process = SandboxProcess(
            "docker-registry",
            ["docker-registry", "serve", str(state_dir / "registry.yml")],
            state_dir / "registry.log",
        )

    def start(self) -> LocalRegistry:
        """Write the config, start the registry and wait until /v2/ answers."""
        if shutil.which("docker-registry") is None:
            raise RuntimeError("docker-registry is not installed (Debian package docker-registry)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = REGISTRY_CONFIG.format(root=self.state_dir / "data", address=self.address)
        (self.state_dir / "registry.yml").write_text(config)
        self._process.start()
        try:
            wait_for_http(f"http://{self.address}/v2/", timeout=20)
        except TimeoutError as err:
            self._process.stop()
            raise RuntimeError(f"{err}; registry log: {self._process.log_tail()}") from err
        return self

    def stop(self) -> None:
        """Stop the registry process."""
        self._process.stop()

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
