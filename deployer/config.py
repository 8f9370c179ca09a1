"""Load the YAML config, validate all of it at once, and return frozen typed objects.

Every problem is reported with its path (`services.web.health.timeout: expected seconds, got
'soon'`). Secrets never live here: the config names environment variables that hold them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from deployer.container_options import (
    ContainerOptions,
    container_option_checks,
    secret_env_checks,
    secret_env_names,
)
from deployer.errors import ConfigError
from deployer.resources import TEMPLATES
from deployer.swarm_options import NODE_ADDRESS, Engine, SwarmOptions, swarm_option_checks

DEFAULT_TEMPLATE = TEMPLATES / "nginx" / "upstreams.conf.j2"
DEFAULT_CONFIG_PATH = Path("config/deployer.yml")
DOCKER_HUB = "docker.io"
MIN_TOKEN_LENGTH = 16
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
DOCKER_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PORT_NUMBER = re.compile(r"[0-9]{1,5}")
MAX_SECONDS = 86400.0  # one day: longer is a typo, and Event.wait() overflows near infinity
CONTAINER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# host[:port] as the first component of an image name: DNS name / IPv4 / [IPv6], optional port
REGISTRY_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError(
            "seconds", "expected seconds (a number), got {value}", {"value": repr(value)}
        )
    if not math.isfinite(value):
        raise PydanticCustomError(
            "seconds", "expected a finite number of seconds, got {value}", {"value": repr(value)}
        )
    if value < 0:
        raise PydanticCustomError(
            "seconds", "expected seconds >= 0, got {value}", {"value": repr(value)}
        )
    if value > MAX_SECONDS:
        raise PydanticCustomError(
            "seconds", "expected seconds <= 86400 (one day), got {value}", {"value": repr(value)}
        )
    return float(value)


def _positive_seconds(value: Any) -> float:
    seconds = _seconds(value)
    if seconds == 0:
        raise PydanticCustomError(
            "seconds", "expected seconds > 0, got {value}", {"value": repr(value)}
        )
    return seconds


Seconds = Annotated[float, BeforeValidator(_seconds)]
PositiveSeconds = Annotated[float, BeforeValidator(_positive_seconds)]  # a wait between tries
Port = Annotated[int, Field(ge=1, le=65535)]


def _env_name(value: str) -> str:
    if not ENV_NAME.match(value):
        raise PydanticCustomError(
            "env_name", "expected an environment variable name, got {value}", {"value": repr(value)}
        )
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


def _registry_host(value: str) -> str:
    match = REGISTRY_HOST.fullmatch(value)
    if match is None or not _names_registry(value) or int(match["port"] or 1) > 65535:
        raise PydanticCustomError(
            "registry_host",
            "expected a registry host as image names spell it: host[:port] with a '.' or a "
            "port, or localhost (no scheme, no path), e.g. registry.example.com or "
            "127.0.0.1:5000; got {value}",
            {"value": repr(value)},
        )
    return value


RegistryHost = Annotated[str, AfterValidator(_registry_host)]


def _node_address(value: str) -> str:
    if not NODE_ADDRESS.match(value):
        raise PydanticCustomError(
            "node_address",
            "expected a node's address nginx can reach (a host name, IPv4 or [IPv6], no port), "
            "got {value}",
            {"value": repr(value)},
        )
    return value


NodeAddress = Annotated[str, AfterValidator(_node_address)]
FinishedState = Literal["succeeded", "failed", "skipped", "superseded"]


def _succeeded_and_failed() -> list[FinishedState]:
    return ["succeeded", "failed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class PortRange(_Frozen):
    """An inclusive range of host ports, written `18000-18099` in YAML."""

    first: Port
    last: Port

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
            if match is None:
                raise PydanticCustomError(
                    "port_range",
                    "expected a range like 18000-18099, got {value}",
                    {"value": repr(value)},
                )
            return {"first": int(match.group(1)), "last": int(match.group(2))}
        if isinstance(value, int) and not isinstance(value, bool):
            return {"first": value, "last": value}
        return value

    @model_validator(mode="after")
    def _two_or_more(self) -> PortRange:
        if self.last < self.first + 1:
            raise PydanticCustomError(
                "port_range",
                "needs at least 2 ports (old and new containers run side by side), got {text}",
                {"text": str(self)},
            )
        return self

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def __iter__(self) -> Any:
        return iter(range(self.first, self.last + 1))

    def overlaps(self, other: PortRange) -> bool:
        return self.first <= other.last and other.first <= self.last


class HealthConfig(_Frozen):
    """How to tell that a new container is ready for traffic."""

    path: str = "/healthz"
    timeout: Seconds = 30.0
    interval: PositiveSeconds = 0.5

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise PydanticCustomError(
                "path", "expected a path starting with '/', got {value}", {"value": repr(value)}
            )
        return value


class ServiceConfig(ContainerOptions, SwarmOptions):
    """One service: which image it runs, what triggers it, and how it is checked and switched.

    The keys of ContainerOptions (deployer/container_options.py) say how its container runs:
    command, volumes, limits, restart policy, healthcheck, ...; those of SwarmOptions
    (deployer/swarm_options.py) how it runs as a Swarm service (`engine: swarm`).
    """

    image: str
    repository: str = ""
    tag: str = Field(default="latest", pattern=DOCKER_TAG)
    network: str = "host"
    ports: PortRange | None = None  # required, except for Swarm's ingress and dns publishing
    port: Port = 8080
    env: dict[str, str] = Field(default_factory=dict)
    health: HealthConfig = HealthConfig()
    drain: Seconds = 5.0
    stop_timeout: Seconds = 10.0
    keep_images: int = Field(default=3, ge=1)  # images kept per service for registry-free rollback
    replicas: int = Field(default=1, ge=1, le=64)  # containers per release, all behind nginx
    # blue-green: the new release starts beside the old one; stop-first: the old one stops
    # first (for services that must never run twice), with a gap the record measures.
    strategy: Literal["blue-green", "stop-first"] = "blue-green"

    @field_validator("image")
    @classmethod
    def _image_without_tag(cls, value: str) -> str:
        last = value.rsplit("/", 1)[-1]
        if not value or "@" in value or ":" in last or value != value.strip():
            raise PydanticCustomError(
                "image",
                "expected an image name without tag or digest (set `tag`), got {value}",
                {"value": repr(value)},
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not ENV_NAME.match(name)]
        if bad:
            raise PydanticCustomError(
                "env", "invalid variable name(s): {names}", {"names": ", ".join(bad)}
            )
        return value

    @model_validator(mode="after")
    def _default_repository(self) -> ServiceConfig:
        if not self.repository:
            object.__setattr__(self, "repository", repository_of(self.image))
        return self


class ServerConfig(_Frozen):
    host: str = "127.0.0.1"
    port: Port = 5000


class WebhooksConfig(_Frozen):
    token_env: EnvName = "DEPLOYER_TOKEN"  # noqa: S105 (the variable's name, not a secret)


class AdminConfig(_Frozen):
    """The admin API (manual deploy, rollback); off until the token variable is set."""

    token_env: EnvName = "DEPLOYER_ADMIN_TOKEN"  # noqa: S105 (the variable's name)


class ReadConfig(_Frozen):
    """Reads (status, history, page, metrics) need this token once its variable is set."""

    token_env: EnvName = "DEPLOYER_READ_TOKEN"  # noqa: S105 (the variable's name)


class NotifyTarget(_Frozen):
    """Where to announce finished deployments. `${VAR}` in url is read from the environment."""

    url: str
    format: Literal["json", "slack"] = "json"
    on: list[FinishedState] = Field(default_factory=_succeeded_and_failed, min_length=1)
    timeout: PositiveSeconds = 5.0
    attempts: int = Field(default=3, ge=1, le=10)


class RegistryConfig(_Frozen):
    """Credentials for one registry, by the names of the variables that hold them."""

    username_env: EnvName
    password_env: EnvName


class NginxConfig(_Frozen):
    template: Path = DEFAULT_TEMPLATE
    output: Path = Path("/etc/nginx/conf.d/deployer-upstreams.conf")
    test: list[str] = Field(default_factory=lambda: ["nginx", "-t"], min_length=1)
    reload: list[str] = Field(default_factory=lambda: ["nginx", "-s", "reload"], min_length=1)
    pid_file: Path | None = None  # set: wait until nginx applied each reload (see nginx_workers)
    container: str | None = Field(default=None, pattern=CONTAINER_NAME)  # see nginx_container
    reload_timeout: Seconds = 10.0


class QueueConfig(_Frozen):
    """A push starts at once; pushes during a deployment collapse into one follow-up job."""

    coalesce: Seconds = 0.0  # an extra wait for more pushes before a job starts


class HistoryConfig(_Frozen):
    """How much deployment history to keep (pruned after each deployment and at start)."""

    keep_per_service: int = Field(default=1000, ge=10)
    max_age_days: int | None = Field(default=None, ge=1)  # unset: no age limit


class Config(_Frozen):
    """The whole, validated configuration."""

    server: ServerConfig = ServerConfig()
    state_dir: Path = Path("var")
    instance: str = "default"
    webhooks: WebhooksConfig = WebhooksConfig()
    nginx: NginxConfig = NginxConfig()
    queue: QueueConfig = QueueConfig()
    history: HistoryConfig = HistoryConfig()
    admin: AdminConfig = AdminConfig()
    read: ReadConfig = ReadConfig()
    notify: list[NotifyTarget] = Field(default_factory=list)
    registries: dict[RegistryHost, RegistryConfig] = Field(default_factory=dict)
    engine: Engine = "docker"  # each service's default: containers, or Swarm services
    nodes: list[NodeAddress] = Field(default_factory=list)  # Swarm publish: ingress
    services: dict[str, ServiceConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _service_engines(self) -> Config:
        for service in self.services.values():
            if service.engine is None:
                object.__setattr__(service, "engine", self.engine)
        return self

    @field_validator("instance")
    @classmethod
    def _instance_name(cls, value: str) -> str:
        if not SERVICE_NAME.match(value):
            raise PydanticCustomError(
                "name", "expected letters, digits, '-' or '_', got {value}", {"value": repr(value)}
            )
        return value


def repository_of(image: str) -> str:
    """The Docker Hub repo_name for an image: the path without registry host (`library/x` alone)."""
    parts = image.split("/")
    if len(parts) > 1 and _names_registry(parts[0]):
        parts = parts[1:]
    if len(parts) == 1:
        parts = ["library", *parts]
    return "/".join(parts)


def registry_of(image: str) -> str:
    """The registry host of an image (`docker.io` when the name has none), as Docker reads it."""
    first, slash, _ = image.partition("/")
    return first if slash and _names_registry(first) else DOCKER_HUB


def _names_registry(component: str) -> bool:
    """Docker's rule: an image's first path component is a registry host when it has a '.' or
    a ':' or is `localhost`; otherwise the image is on Docker Hub."""
    return "." in component or ":" in component or component == "localhost"


def parse_config(
    data: Any,
    source: str = "config",
    environ: Mapping[str, str] | None = None,
    require_secrets: bool = True,
) -> Config:
    """Validate a loaded YAML document; raise ConfigError listing every problem.

    require_secrets=False is for the client commands, which only need `server`.
    """
    environ = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): expected a mapping, got {type(data).__name__}"])
    problems = _name_checks(data)
    data = _apply_environment_overrides(data, environ, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        problems.extend(_format_error(error) for error in err.errors())
        if require_secrets:
            problems.extend(_secret_checks(data, environ))
        raise ConfigError(source, problems) from None
    problems.extend(_cross_checks(config))
    if require_secrets:
        problems.extend(_secret_checks(data, environ))
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, require_secrets: bool = True
) -> Config:
    """Read and validate the YAML file at path."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(str(path), [f"(file): cannot read: {err.strerror}"]) from None
    try:
        text = raw.decode()
    except UnicodeDecodeError as err:
        line_number = raw[: err.start].count(b"\n") + 1
        problem = f"not UTF-8 text: byte {raw[err.start]:#04x} on line {line_number}"
        raise ConfigError(str(path), [f"(file): {problem}; save it as UTF-8"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        raise ConfigError(str(path), [f"(yaml): {line}{getattr(err, 'problem', err)}"]) from None
    except RecursionError:
        raise ConfigError(str(path), ["(yaml): nested too deeply"]) from None
    return parse_config(data, str(path), environ, require_secrets)


def resolve_config_path(cli_value: str | None, environ: Mapping[str, str]) -> Path:
    """--config, else $DEPLOYER_CONFIG, else config/deployer.yml."""
    return Path(cli_value or environ.get("DEPLOYER_CONFIG") or DEFAULT_CONFIG_PATH)


def _apply_environment_overrides(
    data: dict[str, Any], environ: Mapping[str, str], problems: list[str]
) -> dict[str, Any]:
    server = dict(data.get("server") or {}) if isinstance(data.get("server"), dict | None) else None
    if server is None:
        return data
    if environ.get("HTTP_HOST"):
        server["host"] = environ["HTTP_HOST"]
    if environ.get("HTTP_PORT"):
        raw = environ["HTTP_PORT"]
        if PORT_NUMBER.fullmatch(raw) and 1 <= int(raw) <= 65535:
            server["port"] = int(raw)
        else:
            problems.append(f"HTTP_PORT (environment): expected a port number, got {raw!r}")
    return {**data, "server": server}


def _name_checks(data: dict[str, Any]) -> list[str]:
    services = data.get("services")
    if not isinstance(services, dict):
        return []
    return [
        f"services.{name}: invalid service name (letters, digits, '-' and '_', up to 63 long)"
        for name in services
        if not isinstance(name, str) or not SERVICE_NAME.match(name)
    ]


def _cross_checks(config: Config) -> list[str]:
    problems: list[str] = []
    pools = [
        (name, service, service.ports)
        for name, service in config.services.items()
        if service.ports is not None
    ]
    for name, service in config.services.items():
        if service.engine == "docker" and service.ports is None:
            problems.append(f"services.{name}.ports: required")
    for name, service, ports in pools:
        # the old release's containers keep their ports until retired (stop-first: until the
        # new one is healthy, to start them again if it is not); Swarm: swarm_option_checks
        needed = 2 * service.replicas
        if service.engine == "docker" and len(list(ports)) < needed:
            problems.append(
                f"services.{name}.ports: {ports} has {len(list(ports))} ports; "
                f"{service.replicas} replica(s) need {needed} (the old and the new release)"
            )
    for index, (name, _, ports) in enumerate(pools):
        for other_name, _, other in pools[:index]:
            if ports.overlaps(other):
                problems.append(
                    f"services.{name}.ports: {ports} overlaps services.{other_name}.ports ({other})"
                )
    return problems + container_option_checks(config.services) + swarm_option_checks(config)


def _secret_checks(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    problems = _token_check(data, "webhooks", WebhooksConfig().token_env, environ, required=True)
    problems += _token_check(data, "admin", AdminConfig().token_env, environ, required=False)
    problems += _token_check(data, "read", ReadConfig().token_env, environ, required=False)
    problems += _distinct_tokens(data, environ)
    problems += _registry_checks(data, environ)
    problems += secret_env_checks(data, environ)
    targets = data.get("notify")
    for index, target in enumerate(targets if isinstance(targets, list) else []):
        url = target.get("url") if isinstance(target, dict) else None
        for name in ENV_REFERENCE.findall(url if isinstance(url, str) else ""):
            if not environ.get(name):
                problems.append(f"notify.{index}.url: environment variable {name} is not set")
    return problems


def _token_check(
    data: dict[str, Any], section: str, default: str, environ: Mapping[str, str], required: bool
) -> list[str]:
    block = data.get(section)
    name = block.get("token_env", default) if isinstance(block, dict) else default
    if not isinstance(name, str) or not ENV_NAME.match(name):
        return []  # reported by the schema already
    token = environ.get(name, "")
    if not token:
        what = {
            "webhooks": "the webhook secret",
            "admin": "the admin API token",
            "read": "the read token",
        }[section]
        return [f"{section}.token_env: environment variable {name} is not set ({what})"] * required
    if len(token) < MIN_TOKEN_LENGTH:
        return [
            f"{section}.token_env: {name} is {len(token)} characters; "
            f"use a random token of at least {MIN_TOKEN_LENGTH}"
        ]
    return []


def _registry_checks(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Each registries entry's variables must be set (their values are never shown)."""
    registries = data.get("registries")
    problems = []
    for host, entry in (registries if isinstance(registries, dict) else {}).items():
        for key, what in (("username_env", "user name"), ("password_env", "password")):
            name = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(name, str) and ENV_NAME.match(name) and not environ.get(name):
                problems.append(
                    f'registries."{host}".{key}: environment variable {name} is not set '
                    f"(the {what} for registry {host})"
                )
    return problems


def _token_name(data: dict[str, Any], section: str, default: str) -> str:
    block = data.get(section)
    name = block.get("token_env", default) if isinstance(block, dict) else default
    return name if isinstance(name, str) else default


def _distinct_tokens(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The webhook URL is stored at the registry: its token must not open anything else."""
    webhook = _token_name(data, "webhooks", WebhooksConfig().token_env)
    problems = []
    for section, default, what in (
        ("admin", AdminConfig().token_env, "an admin credential"),
        ("read", ReadConfig().token_env, "a read credential"),
    ):
        other = _token_name(data, section, default)
        if environ.get(webhook) and environ.get(webhook) == environ.get(other):
            problems.append(
                f"{section}.token_env: {other} holds the same value as {webhook} "
                "(webhooks.token_env); the webhook URL is stored at the registry, so it must "
                f"not also be {what}: use two different random tokens"
            )
    return problems


def expand_environment(text: str, environ: Mapping[str, str]) -> str:
    """Replace each `${VAR}` in text with its value from environ (checked at load)."""
    return ENV_REFERENCE.sub(lambda match: environ.get(match.group(1), ""), text)


def secret_values(config: Config, environ: Mapping[str, str]) -> list[str]:
    """Every secret the config points at, for the log filter: tokens, notify URL variables,
    registry passwords, services' secret_env."""
    names = [config.webhooks.token_env, config.admin.token_env, config.read.token_env]
    names += [registry.password_env for registry in config.registries.values()]
    names += secret_env_names(config.services)
    for target in config.notify:
        names += ENV_REFERENCE.findall(target.url)
    return [environ[name] for name in names if environ.get(name)]


_FRIENDLY = {
    "missing": "required",
    "extra_forbidden": "unknown key (check the spelling)",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
}


def _path_part(part: Any) -> str:
    """A key with dots (a registry host) is quoted, so the path still reads unambiguously."""
    text = str(part)
    return f'"{text}"' if "." in text else text


def _format_error(error: Any) -> str:
    parts = [_path_part(part) for part in error["loc"] if part != "[key]"]  # a bad mapping key
    location = ".".join(parts) or "(top level)"
    message = _FRIENDLY.get(error["type"], error["msg"])
    if error["type"] in _FRIENDLY and error["type"] not in ("missing", "extra_forbidden"):
        message = f"{message}, got {error.get('input')!r}"
    return f"{location}: {message}"
