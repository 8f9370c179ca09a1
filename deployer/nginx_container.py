"""nginx in its own container: `nginx.test` and `nginx.reload` run inside it (docker exec).

deployer running in a container cannot test and reload another nginx by itself: `nginx -t`
reads the whole nginx config (TLS keys included) and opens nginx's pid and log files, and only
root may signal nginx's master, while deployer runs as an unprivileged user. With
`nginx.container` set, both commands run inside that container as its user, through the
Docker engine that deployer already reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from deployer.config import NginxConfig
from deployer.errors import ConfigError
from deployer.nginx import CommandResult, Runner


@runtime_checkable
class Executor(Protocol):
    """A backend that can run a command inside a running container."""

    def run_in(self, container: str, argv: Sequence[str]) -> tuple[int, str]: ...


def container_runner(executor: Executor, container: str) -> Runner:
    """A Runner that runs each argv inside `container`."""

    def run(argv: Sequence[str]) -> CommandResult:
        returncode, output = executor.run_in(container, argv)
        return CommandResult(returncode, output)

    return run


def nginx_runner(config: NginxConfig, backend: object, run: Runner) -> Runner:
    """`run` (commands on this host), or, with nginx.container set, one running them there."""
    if config.container is None:
        return run
    if not isinstance(backend, Executor):
        raise ConfigError(
            "config",
            [f"nginx.container: the {type(backend).__name__} cannot run commands in containers"],
        )
    return container_runner(backend, config.container)
