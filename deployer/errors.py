"""The deployer exception tree. Third-party exceptions are translated once, in the adapter.

Each class knows the HTTP status it answers with (`http_status`); deployer/http turns any of
them into `{"error": message}` in one handler.

DeployerError
├── ConfigError            the YAML config has problems (every one listed, with its path)
├── BadRequest             a request body or query parameter is not what the endpoint takes (400)
│   └── BadWebhook         a webhook body could not be parsed (the reason says what)
├── Unauthorized           no credentials where they are needed (401)
├── Forbidden              wrong credentials (403)
├── NotFound               no such service or deployment (404)
├── Unavailable            a feature is off, or deployer is stopping (503)
│   └── QueueClosed        the service is shutting down and takes no new work
├── DockerError            the Docker engine refused or failed an operation
│   ├── RegistryError      a tag could not be resolved or an image not pulled
│   ├── ContainerError     a container could not be started, or exited
│   │   └── ContainerMissing   the container is not on the engine
│   └── ServiceError       a Swarm service could not be created, updated, read or removed
├── ContainerEnvError      an env_file cannot be read, or a variable it or secret_env names is unset
├── HealthCheckFailed      a new container did not become healthy in time
├── NginxError             rendering, testing or reloading the nginx config failed
├── NoFreePort             every port of a service's pool is taken
├── DeploymentCancelled    the deployer is stopping; the deployment was rolled back
├── FinishLater            the deployer is stopping after the switch; the next start finishes it
└── NothingToRollBack      a rollback has no target (no earlier succeeded deployment) (409)
"""

from __future__ import annotations


class DeployerError(Exception):
    """Root of every error deployer raises on purpose."""

    http_status = 500
    headers: dict[str, str] = {}  # noqa: RUF012 (read-only; subclasses set their own)


class ConfigError(DeployerError):
    """The config has problems; `problems` lists each as 'path: message'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{listing}")


class BadRequest(DeployerError):
    """A request body or query parameter is not what the endpoint takes; the message says why."""

    http_status = 400


class BadWebhook(BadRequest):
    """A webhook payload is malformed; the message names the field."""


class Unauthorized(DeployerError):
    """Credentials are needed and none came; `headers` say which scheme to use."""

    http_status = 401

    def __init__(self, message: str, challenge: str) -> None:
        self.headers = {"WWW-Authenticate": challenge}
        super().__init__(message)


class Forbidden(DeployerError):
    """The credentials that came are wrong."""

    http_status = 403


class NotFound(DeployerError):
    """No such service or deployment."""

    http_status = 404


class Unavailable(DeployerError):
    """A feature is turned off, or deployer is stopping."""

    http_status = 503


class QueueClosed(Unavailable):
    """The queue is stopping and accepts no new deployments."""


class DockerError(DeployerError):
    """An operation on the Docker engine failed."""

    http_status = 502  # deployer's own upstream, the engine, failed


class RegistryError(DockerError):
    """Resolving or pulling `reference` failed."""

    def __init__(self, reference: str, message: str) -> None:
        self.reference = reference
        super().__init__(message)


class ContainerError(DockerError):
    """Something went wrong with container `name`; `logs` holds its last lines."""

    def __init__(self, name: str, message: str, logs: str = "") -> None:
        self.name = name
        self.logs = logs
        super().__init__(message)


class ContainerMissing(ContainerError):
    """Container `name` is not on the engine (removed, or never created)."""


class ServiceError(DockerError):
    """The engine refused or failed an operation on Swarm service `service`."""

    def __init__(self, service: str, message: str) -> None:
        self.service = service
        super().__init__(message)


class UpdateFailed(DeployerError):
    """A Swarm update of `service` did not succeed (Swarm rolled it back, it flapped, or the
    deadline passed); `logs` holds the failed tasks' last lines (they may print secrets)."""

    def __init__(self, service: str, message: str, logs: str = "") -> None:
        self.service = service
        self.logs = logs
        super().__init__(message)


class ContainerEnvError(DeployerError):
    """A container's env_file or secret_env cannot be read; the message names the file, line
    or variable, never a value."""


class HealthCheckFailed(DeployerError):
    """Container `name` did not become healthy; `logs` holds its last lines."""

    def __init__(self, name: str, message: str, logs: str = "") -> None:
        self.name = name
        self.logs = logs
        super().__init__(message)


class NginxError(DeployerError):
    """The nginx config at `path` could not be rendered, tested or reloaded."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class NoFreePort(DeployerError):
    """Every port in the pool of `service` is in use."""

    def __init__(self, service: str, message: str) -> None:
        self.service = service
        super().__init__(message)


class DeploymentCancelled(DeployerError):
    """The deployer is stopping; the half-done deployment was rolled back."""


class FinishLater(DeployerError):
    """The deployer is stopping after a deployment's switch: it stays `running`, and the next
    start finishes it (drain, retire) instead of waiting past the stop budget now."""


class NothingToRollBack(DeployerError):
    """A rollback was asked for but there is no other succeeded digest to go back to."""

    http_status = 409
