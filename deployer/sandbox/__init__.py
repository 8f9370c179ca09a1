"""A local, loopback-only sandbox: Docker engine, registry, nginx and tiny test images.

Used by the integration tests and by `deployer demo`. Every piece runs on 127.0.0.1 and is
driven through argv lists (the `docker` CLI, `docker-registry`, `nginx`), never a shell string.

Fault injection (tests/faults): EngineProxy (engine_proxy.py) and TcpProxy (tcp_proxy.py) with
their rules (faults.py); LocalRegistry's damage helpers; AppBehaviour.IGNORE_TERM and SLOW_PATH
(images.py); SlowCommand (slow_command.py); Load (load.py); and `deployer serve` as a process
to SIGKILL and restart: deployer.sandbox.serve.ServeProcess (not re-exported here: it imports
deployer.demo, which imports this package).
"""

from deployer.sandbox.engine import EngineUnavailable, ensure_engine
from deployer.sandbox.engine_proxy import EngineProxy
from deployer.sandbox.faults import Action, Request, Rule
from deployer.sandbox.images import SLOW_PATH, AppBehaviour, ImageFactory
from deployer.sandbox.load import Load
from deployer.sandbox.net import free_port
from deployer.sandbox.nginx import SandboxNginx
from deployer.sandbox.registry import LocalRegistry
from deployer.sandbox.slow_command import SlowCommand
from deployer.sandbox.tcp_proxy import TcpProxy

__all__ = [
    "SLOW_PATH",
    "Action",
    "AppBehaviour",
    "EngineProxy",
    "EngineUnavailable",
    "ImageFactory",
    "Load",
    "LocalRegistry",
    "Request",
    "Rule",
    "SandboxNginx",
    "SlowCommand",
    "TcpProxy",
    "ensure_engine",
    "free_port",
]
