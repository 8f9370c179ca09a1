"""A local, loopback-only sandbox: Docker engine, registry, nginx and tiny test images.

Used by the integration tests and by `deployer demo`. Every piece runs on 127.0.0.1 and is
driven through argv lists (the `docker` CLI, `docker-registry`, `nginx`), never a shell string.
"""

from deployer.sandbox.engine import EngineUnavailable, ensure_engine
from deployer.sandbox.images import AppBehaviour, ImageFactory
from deployer.sandbox.net import free_port
from deployer.sandbox.nginx import SandboxNginx
from deployer.sandbox.registry import LocalRegistry

__all__ = [
    "AppBehaviour",
    "EngineUnavailable",
    "ImageFactory",
    "LocalRegistry",
    "SandboxNginx",
    "ensure_engine",
    "free_port",
]
