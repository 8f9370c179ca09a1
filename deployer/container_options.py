"""How a service's container runs, as `docker run` and Compose name it: validated and normalised.

`ServiceConfig` (deployer/config.py) inherits `ContainerOptions`, so every key here is a key of
`services.NAME`. Values are normalised at load to what the engine takes (memory in bytes, CPUs
in nano-CPUs, healthcheck durations in nanoseconds, relative bind sources made absolute), so
`make_container_spec` only copies them. Secrets stay out of the config: `secret_env` names
variables and `env_file` names files; their values are read when a container starts
(deployer/rollout/environment.py).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import signal
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from deployer.config import ServiceConfig

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # the rule of `env` keys in config.py
RESERVED_LABELS = "deployer."
RESERVED_VARIABLE = "PORT"  # deployer sets it: the port the app listens on
SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp]?)i?b?", re.IGNORECASE)  # go-units RAMInBytes
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
MIN_MEMORY = 6 * 1024**2  # the engine refuses a smaller memory limit
MIN_CPUS = Decimal("0.01")  # the engine's smallest --cpus
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
DURATION_UNITS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
MIN_HEALTH_DURATION = 10**6  # 1 ms: the engine's smallest non-zero healthcheck duration
MAX_DURATION = 86400 * 10**9  # one day, as other durations in the config
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")  # the engine's local volume names
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
LOG_DRIVER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
REALTIME_SIGNAL = re.compile(r"^SIGRT(MIN|MAX)([+-]\d{1,2})?$")
ULIMIT_NAMES = frozenset(
    "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
    "sigpending stack".split()
)
HEALTH_TESTS = {"CMD": "2+", "CMD-SHELL": "2", "NONE": "1"}


def _problem(kind: str, message: str, value: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message + ", got {value}", {"value": repr(value)})


def _text(value: Any) -> Any:
    """A string, or a whole number YAML read as one (`max-file: 3`); anything else is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _problem("text", "expected a string (quote values YAML reads otherwise)", value)
    return value


Text = Annotated[str, BeforeValidator(_text)]


def _argv(value: Any) -> Any:
    if not isinstance(value, list):
        raise _problem("argv", "expected an argv list like [app, --port, '8080'] (no shell)", value)
    return value


Argv = Annotated[list[Text], BeforeValidator(_argv), Field(min_length=1)]


def _absolute_path(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise _problem("path", "expected an absolute path in the container", value)
    return os.path.normpath(value)


ContainerPath = Annotated[str, AfterValidator(_absolute_path)]


def _memory(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := SIZE.fullmatch(value)):
        size = int(Decimal(match[1]) * SIZE_UNITS[match[2].lower()])
    else:
        raise _problem("size", "expected a size like 64m or 1g", value)
    if size < MIN_MEMORY:
        raise _problem("size", "expected at least 6m (the engine's smallest limit)", value)
    return size


def _nano_cpus(value: Any) -> int:
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidOperation
        cpus = Decimal(str(value).strip())
    except InvalidOperation:
        raise _problem("cpus", "expected a number of CPUs like 0.5 or 2", value) from None
    if not cpus.is_finite() or cpus < MIN_CPUS:
        raise _problem("cpus", "expected at least 0.01 CPUs", value)
    return int(cpus * 10**9)


def _pids_limit(value: int) -> int:
    if value < 1 and value != -1:
        raise _problem("pids_limit", "expected a number of processes >= 1 (or -1: none)", value)
    return value


def _nanoseconds(value: Any) -> int:
    """Compose's durations (`1m30s`, `500ms`) or a number of seconds, as nanoseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise _problem("duration", "expected a duration like 30s or 1m30s", value)
        nanoseconds = int(Decimal(str(value)) * 10**9)
    elif isinstance(value, str) and re.fullmatch(f"(?:{DURATION_PART.pattern})+", value):
        nanoseconds = sum(
            int(Decimal(number) * DURATION_UNITS[unit])
            for number, unit in DURATION_PART.findall(value)
        )
    else:
        raise _problem("duration", "expected a duration like 30s or 1m30s", value)
    if 0 < nanoseconds < MIN_HEALTH_DURATION or nanoseconds > MAX_DURATION:
        raise _problem("duration", "expected 0 (the image's) or from 1ms to 24h", value)
    return nanoseconds


def _stop_signal(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _problem("signal", "expected a signal like SIGTERM, QUIT or 3", value)
    if value.isdigit():
        if not 1 <= int(value) <= 64:
            raise _problem("signal", "expected a signal number from 1 to 64", value)
        return value
    name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
    if name not in signal.Signals.__members__ and not REALTIME_SIGNAL.match(name):
        raise _problem("signal", "expected a signal like SIGTERM, QUIT or 3", value)
    return name


def _user(value: Any) -> str:
    text = _text(value)
    if not USER.match(text):
        raise _problem("user", "expected a user like 1000, 1000:1000 or app:app", value)
    return str(text)


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _tmpfs(value: Any) -> Any:
    """`/run` or `/run:size=64m,mode=1777` (docker run --tmpfs), one or a list: path -> options."""
    mounts: dict[str, str] = {}
    for entry in _listed(value) if isinstance(value, list | str) else [value]:
        if not isinstance(entry, str):
            raise _problem("tmpfs", "expected a path like /run or /run:size=64m", entry)
        path, _, options = entry.partition(":")
        mounts[_absolute_path(path)] = options
    return mounts


def _key_values(value: Any, what: str, separators: str) -> Any:
    """A mapping, or Compose's list form (`key=value`, or `key:value` where allowed)."""
    if not isinstance(value, list):
        return value
    pairs = {}
    for entry in value:
        found = (
            [at for at in (entry.find(sep) for sep in separators) if at > 0]
            if isinstance(entry, str)
            else []
        )
        if not found:
            example = f"name{separators[0]}value"
            raise _problem(what, f"expected a mapping or a list of {example}", entry)
        pairs[entry[: min(found)]] = entry[min(found) + 1 :]
    return pairs


def _labels(value: Any) -> Any:
    return _key_values(value, "labels", "=")


def _extra_hosts(value: Any) -> Any:
    return _key_values(value, "extra_hosts", "=:")


def _host_address(value: str) -> str:
    if value == "host-gateway":
        return value
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        raise _problem("address", "expected an IP address or host-gateway", value) from None


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
            raise _problem(
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
            raise _problem(
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
            raise _problem("volume", "expected a container path other than /", value)
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
            raise _problem(
                "restart", "expected no, always, unless-stopped, on-failure or on-failure:N", value
            )
        return {"name": match[1], "maximum_retry_count": int(match[2] or 0)}

    def __str__(self) -> str:
        retries = f":{self.maximum_retry_count}" if self.maximum_retry_count else ""
        return self.name + retries


Nanoseconds = Annotated[int, BeforeValidator(_nanoseconds)]


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
            raise _problem(
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
    user: Annotated[str, BeforeValidator(_user)] | None = None
    working_dir: ContainerPath | None = None
    volumes: list[Volume] = Field(default_factory=list)
    tmpfs: Annotated[dict[str, str], BeforeValidator(_tmpfs)] = Field(default_factory=dict)
    env_file: Annotated[list[Path], BeforeValidator(_listed)] = Field(default_factory=list)
    secret_env: list[str] = Field(default_factory=list)
    labels: Annotated[dict[str, Text], BeforeValidator(_labels)] = Field(default_factory=dict)
    extra_hosts: Annotated[dict[str, str], BeforeValidator(_extra_hosts)] = Field(
        default_factory=dict
    )
    memory: Annotated[int, BeforeValidator(_memory)] | None = None  # bytes
    cpus: Annotated[int, BeforeValidator(_nano_cpus)] | None = None  # nano-CPUs: 1.5 -> 1.5e9
    pids_limit: Annotated[int, AfterValidator(_pids_limit)] | None = None
    ulimits: dict[str, Ulimit] = Field(default_factory=dict)
    log: LogOptions | None = None
    stop_signal: Annotated[str, BeforeValidator(_stop_signal)] | None = None
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
                raise _problem("extra_hosts", "expected a host name", name)
        return {name: _host_address(address) for name, address in value.items()}

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
