"""How a service's container runs, as `docker run` and Compose name it: validated and normalised.

`ServiceConfig` (deployer/config.py) inherits `ContainerOptions`, so every key here is a key of
`services.NAME`. Values are normalised at load to what the engine takes (memory in bytes, CPUs
in nano-CPUs, healthcheck durations in nanoseconds, relative bind sources made absolute), so
`make_container_spec` only copies them. Secrets stay out of the config: `secret_env` names
variables and `env_file` names files; their values are read when a container starts
(deployer/rollout/environment.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from deployer.notation import (
    HOST_NAME,
    Argv,
    ContainerPath,
    Memory,
    NanoCpus,
    Nanoseconds,
    PidsLimit,
    StopSignal,
    Text,
    Tmpfs,
    User,
    as_list,
    parse_extra_hosts,
    parse_host_address,
    parse_labels,
    problem,
)

if TYPE_CHECKING:
    from deployer.config import ServiceConfig

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # the rule of `env` keys in config.py
RESERVED_LABELS = "deployer."
RESERVED_VARIABLE = "PORT"  # deployer sets it: the port the app listens on
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")  # the engine's local volume names
LOG_DRIVER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
ULIMIT_NAMES = frozenset(
    "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
    "sigpending stack".split()
)
HEALTH_TESTS = {"CMD": "2+", "CMD-SHELL": "2", "NONE": "1"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class Volume(_Frozen):
    """A bind mount (`source` an absolute host path) or a named volume, `docker run -v` style."""

    source: str
    target: ContainerPath
    read_only: bool = False

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        parts = value.split(":") if isinstance(value, str) else []
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise problem(
                "volume",
                "expected /host/path:/container/path[:ro], ./relative:/path or name:/path",
                value,
            )
        return {"source": parts[0], "target": parts[1], "read_only": parts[2:] == ["ro"]}

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value.startswith("/"):
            return os.path.normpath(value)
        if value.startswith("."):  # relative to the directory deployer runs in
            return os.path.abspath(value)
        if not VOLUME_NAME.match(value):
            raise problem(
                "volume",
                "expected a host path (/absolute or ./relative) or a volume name (letters, "
                "digits, '_', '.', '-')",
                value,
            )
        return value

    @field_validator("target")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == "/":
            raise problem("volume", "expected a container path other than /", value)
        return value

    @property
    def named(self) -> bool:
        """True for a named volume, False for a bind mount of a host path."""
        return not self.source.startswith("/")

    def bind(self) -> str:
        """The engine's bind string: `source:target:ro|rw`."""
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


class Ulimit(_Frozen):
    """A soft and a hard limit (-1: unlimited); a single number sets both."""

    soft: int = Field(ge=-1)
    hard: int = Field(ge=-1)

    @model_validator(mode="before")
    @classmethod
    def _both(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"soft": value, "hard": value}
        return value

    @model_validator(mode="after")
    def _soft_within_hard(self) -> Ulimit:
        unlimited = (self.soft == -1, self.hard == -1)
        if unlimited == (True, False) or (
            -1 not in (self.soft, self.hard) and self.soft > self.hard
        ):
            raise PydanticCustomError(
                "ulimit", "soft {soft} is above hard {hard}", {"soft": self.soft, "hard": self.hard}
            )
        return self


class LogOptions(_Frozen):
    """The container's log driver and its options (`docker run --log-driver --log-opt`)."""

    driver: str | None = Field(default=None, pattern=LOG_DRIVER.pattern)  # None: the engine's
    options: dict[str, Text] = Field(default_factory=dict)


class RestartPolicy(_Frozen):
    """Docker's restart policy: no, always, unless-stopped, on-failure[:N]."""

    name: Literal["no", "always", "unless-stopped", "on-failure"] = "unless-stopped"
    maximum_retry_count: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if value is False:  # YAML reads an unquoted `no` as false
            return {"name": "no"}
        if isinstance(value, dict):
            return value
        match = re.fullmatch(r"(no|always|unless-stopped|on-failure)(?::(\d+))?", str(value))
        if not isinstance(value, str) or match is None or (match[2] and match[1] != "on-failure"):
            raise problem(
                "restart", "expected no, always, unless-stopped, on-failure or on-failure:N", value
            )
        return {"name": match[1], "maximum_retry_count": int(match[2] or 0)}

    def __str__(self) -> str:
        retries = f":{self.maximum_retry_count}" if self.maximum_retry_count else ""
        return self.name + retries


class HealthcheckOverride(_Frozen):
    """Replaces parts of the image's HEALTHCHECK; what is left out stays the image's."""

    test: list[Text] | None = None
    interval: Nanoseconds | None = None
    timeout: Nanoseconds | None = None
    start_period: Nanoseconds | None = None
    retries: int | None = Field(default=None, ge=0)
    disable: bool = False

    @field_validator("test", mode="before")
    @classmethod
    def _shell_string(cls, value: Any) -> Any:
        return ["CMD-SHELL", value] if isinstance(value, str) else value

    @field_validator("test")
    @classmethod
    def _test_form(cls, value: list[str] | None) -> list[str] | None:
        arity = HEALTH_TESTS.get(value[0]) if value else None
        if value is not None and (
            arity is None
            or (arity == "2+" and len(value) < 2)
            or (arity != "2+" and len(value) != int(arity))
        ):
            raise problem(
                "healthcheck",
                "expected [CMD, program, args...], [CMD-SHELL, command], [NONE] or a shell "
                "command string",
                value,
            )
        return value

    @model_validator(mode="after")
    def _disable_alone(self) -> HealthcheckOverride:
        if self.disable and self.test is not None:
            raise PydanticCustomError("healthcheck", "disable: true takes no test", {})
        return self

    def test_argv(self) -> list[str] | None:
        """The test to run: ['NONE'] when disabled, None to keep the image's."""
        return ["NONE"] if self.disable else self.test


class ContainerOptions(_Frozen):
    """The `docker run` options of a service; ServiceConfig inherits these keys."""

    command: Argv | None = None
    entrypoint: Argv | None = None
    user: User | None = None
    working_dir: ContainerPath | None = None
    volumes: list[Volume] = Field(default_factory=list)
    tmpfs: Tmpfs = Field(default_factory=dict)
    env_file: Annotated[list[Path], BeforeValidator(as_list)] = Field(default_factory=list)
    secret_env: list[str] = Field(default_factory=list)
    labels: Annotated[dict[str, Text], BeforeValidator(parse_labels)] = Field(default_factory=dict)
    extra_hosts: Annotated[dict[str, str], BeforeValidator(parse_extra_hosts)] = Field(
        default_factory=dict
    )
    memory: Memory | None = None  # bytes
    cpus: NanoCpus | None = None  # nano-CPUs
    pids_limit: PidsLimit | None = None
    ulimits: dict[str, Ulimit] = Field(default_factory=dict)
    log: LogOptions | None = None
    stop_signal: StopSignal | None = None
    restart: RestartPolicy = RestartPolicy()
    healthcheck: HealthcheckOverride | None = None

    @field_validator("env_file")
    @classmethod
    def _file_names(cls, value: list[Path]) -> list[Path]:
        if any(str(path) in ("", ".") for path in value):
            raise PydanticCustomError("env_file", "expected file paths, got an empty one", {})
        return value

    @field_validator("secret_env")
    @classmethod
    def _variable_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not ENV_NAME.match(name) or name == RESERVED_VARIABLE]
        if bad:
            raise PydanticCustomError(
                "secret_env",
                "expected environment variable names other than PORT, got {names}",
                {"names": ", ".join(map(repr, bad))},
            )
        return list(dict.fromkeys(value))

    @field_validator("labels")
    @classmethod
    def _own_labels(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = [key for key in value if key.startswith(RESERVED_LABELS) or not key]
        if reserved:
            raise PydanticCustomError(
                "labels",
                "labels starting with 'deployer.' are deployer's own (and names may not be "
                "empty), got {names}",
                {"names": ", ".join(map(repr, reserved))},
            )
        return value

    @field_validator("extra_hosts")
    @classmethod
    def _hosts(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not HOST_NAME.match(name):
                raise problem("extra_hosts", "expected a host name", name)
        return {name: parse_host_address(address) for name, address in value.items()}

    @field_validator("ulimits", mode="before")
    @classmethod
    def _ulimit_names(cls, value: Any) -> Any:
        unknown = sorted(map(str, set(value) - ULIMIT_NAMES)) if isinstance(value, dict) else []
        if unknown:
            raise PydanticCustomError(
                "ulimits",
                "unknown limit(s) {names}; known: {known}",
                {"names": ", ".join(unknown), "known": ", ".join(sorted(ULIMIT_NAMES))},
            )
        return value


def container_option_checks(services: Mapping[str, ServiceConfig]) -> list[str]:
    """Problems between keys of one service: a variable in two places, a path mounted twice."""
    problems = []
    for name, service in services.items():
        both = [variable for variable in service.secret_env if variable in service.env]
        if both:
            problems.append(
                f"services.{name}.secret_env: {', '.join(both)} also set in env; keep each "
                "variable in one place"
            )
        targets = [volume.target for volume in service.volumes] + list(service.tmpfs)
        twice = sorted({target for target in targets if targets.count(target) > 1})
        if twice:
            problems.append(
                f"services.{name}.volumes: {', '.join(twice)} mounted more than once "
                "(volumes and tmpfs together)"
            )
    return problems


def secret_env_checks(data: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Every variable a service's secret_env names must be set (its value is never shown)."""
    services = data.get("services")
    problems = []
    for name, service in services.items() if isinstance(services, dict) else []:
        names = service.get("secret_env") if isinstance(service, dict) else None
        for variable in names if isinstance(names, list) else []:
            named = isinstance(variable, str) and ENV_NAME.match(variable) is not None
            if named and variable != RESERVED_VARIABLE and not environ.get(variable):
                problems.append(
                    f"services.{name}.secret_env: environment variable {variable} is not set "
                    "(or empty); set it in deployer's environment"
                )
    return problems


def secret_env_names(services: Mapping[str, ContainerOptions]) -> list[str]:
    """The variables whose values go to containers as secrets (for the log filter)."""
    return [variable for service in services.values() for variable in service.secret_env]
