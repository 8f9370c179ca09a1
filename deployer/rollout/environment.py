"""The secret part of a container's environment, read as it starts: env_file and secret_env.

env_file is in Docker's env-file format (`docker run --env-file`): one `KEY=VALUE` a line, the
value taken as it is (quotes and trailing spaces included), leading whitespace dropped, blank
lines and lines starting with `#` skipped, a UTF-8 byte order mark at the start ignored. `KEY`
alone (a shell variable name) takes the value from deployer's own environment, as Docker takes
it from the docker CLI's; where Docker silently leaves out a variable that is not set there,
deployer fails the start step naming the line (never its text: a line without `=` may be part
of a multi-line secret, which the format cannot hold). Later files win over earlier ones;
secret_env wins over every file.

No value ever reaches a message: problems name the file, the line and (of a `KEY=VALUE` line
only) the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deployer.config import ServiceConfig
from deployer.errors import ContainerEnvError

BYTE_ORDER_MARK = "\ufeff"
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a `KEY` line: a name in the environment
NOT_SHOWN = "the line is not shown: it may hold a secret"


@dataclass(frozen=True)
class SecretEnvironment:
    """What a container gets from env_file and secret_env, and a value-free summary of it."""

    values: dict[str, str] = field(default_factory=dict, repr=False)
    summary: str = ""  # files and variable names, for the start step's detail


def parse_env_file(text: str, source: str, environ: Mapping[str, str]) -> dict[str, str]:
    """KEY=VALUE lines of an env file (pure); `source` names the file in problems."""
    values = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").lstrip()
        if number == 1:
            line = line.removeprefix(BYTE_ORDER_MARK).lstrip()
        if not line or line.startswith("#"):
            continue
        name, has_value, value = line.partition("=")
        where = f"env_file {source} line {number}"
        if not name:
            raise ContainerEnvError(f"{where}: no variable name before '='")
        if any(character in name for character in " \t\0"):
            # Not echoed: `PASSWORD hunter2` (a missing '=') would show the value.
            raise ContainerEnvError(f"{where}: the variable name has a space; write NAME=value")
        if not has_value:
            value = _from_environ(name, where, environ)
        if "\0" in value:
            raise ContainerEnvError(f"{where}: the value of {name} has a NUL character")
        values[name] = value
    return values


def _from_environ(name: str, where: str, environ: Mapping[str, str]) -> str:
    """The value of a `KEY` line from deployer's environment. The line is never echoed: it
    may be a line of a multi-line secret (a PEM key's body) the file cannot hold."""
    if not VARIABLE_NAME.fullmatch(name):
        raise ContainerEnvError(f"{where} is not NAME=value ({NOT_SHOWN})")
    if name not in environ:
        raise ContainerEnvError(
            f"{where} is a name without a value, and deployer's environment has no such "
            f"variable ({NOT_SHOWN}); set it there, or write NAME=value"
        )
    return environ[name]


def read_env_file(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Read and parse one env file; a missing, unreadable or non-UTF-8 file is a problem."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ContainerEnvError(
            f"cannot read env_file {path}: {err.strerror}; create it or fix `env_file`"
        ) from None
    try:
        text = raw.decode()
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ContainerEnvError(
            f"env_file {path} line {line}: not UTF-8 text; save it as UTF-8"
        ) from None
    return parse_env_file(text, str(path), environ)


def read_secret_environment(
    service: ServiceConfig, environ: Mapping[str, str]
) -> SecretEnvironment:
    """The values of service's env_file(s) and secret_env, now (they can change between
    deployments); raises ContainerEnvError naming the file or variable."""
    values: dict[str, str] = {}
    parts = []
    for path in service.env_file:
        found = read_env_file(path, environ)
        values.update(found)
        parts.append(f"env_file {path} ({', '.join(found) or 'no variables'})")
    missing = [name for name in service.secret_env if not environ.get(name)]
    if missing:
        raise ContainerEnvError(
            f"secret_env: {', '.join(missing)} not set in deployer's environment; set "
            "it and deploy again"
        )
    values.update({name: environ[name] for name in service.secret_env})
    if service.secret_env:
        parts.append(f"secret_env ({', '.join(service.secret_env)})")
    return SecretEnvironment(values, "; ".join(parts))
