"""Docker's and Compose's notations for container options, parsed into what the engine takes.

Sizes (`64m`, `1g`) -> bytes, CPUs (`0.5`) -> nano-CPUs, durations (`1m30s`, `500ms`, or
seconds) -> nanoseconds, signals (`QUIT`, `SIGQUIT`, `3`) -> `SIGQUIT`, and the list forms
Compose accepts for mappings. Each parser raises a PydanticCustomError whose message says what
was expected and what came, for the config's `path: message` problems.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import signal
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

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
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
REALTIME_SIGNAL = re.compile(r"^SIGRT(MIN|MAX)([+-]\d{1,2})?$")


def problem(kind: str, message: str, value: Any) -> PydanticCustomError:
    """A validation error: `message, got <value>`."""
    return PydanticCustomError(kind, message + ", got {value}", {"value": repr(value)})


def parse_text(value: Any) -> Any:
    """A string, or a whole number YAML read as one (`max-file: 3`); anything else is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise problem("text", "expected a string (quote values YAML reads otherwise)", value)
    return value


Text = Annotated[str, BeforeValidator(parse_text)]


def parse_argv(value: Any) -> Any:
    """An argv list as it is (a shell string is refused: say the words)."""
    if not isinstance(value, list):
        raise problem("argv", "expected an argv list like [app, --port, '8080'] (no shell)", value)
    return value


Argv = Annotated[list[Text], BeforeValidator(parse_argv), Field(min_length=1)]


def absolute_path(value: str) -> str:
    """An absolute path in the container, normalised (`/app/../srv` -> `/srv`)."""
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise problem("path", "expected an absolute path in the container", value)
    return os.path.normpath(value)


ContainerPath = Annotated[str, AfterValidator(absolute_path)]


def parse_memory(value: Any) -> int:
    """`64m`, `1g`, `512MiB` (1024-based, as Docker) or bytes -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := SIZE.fullmatch(value)):
        size = int(Decimal(match[1]) * SIZE_UNITS[match[2].lower()])
    else:
        raise problem("size", "expected a size like 64m or 1g", value)
    if size < MIN_MEMORY:
        raise problem("size", "expected at least 6m (the engine's smallest limit)", value)
    return size


def parse_nano_cpus(value: Any) -> int:
    """`0.5`, `2` (a number or a numeric string) -> nano-CPUs."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidOperation
        cpus = Decimal(str(value).strip())
    except InvalidOperation:
        raise problem("cpus", "expected a number of CPUs like 0.5 or 2", value) from None
    if not cpus.is_finite() or cpus < MIN_CPUS:
        raise problem("cpus", "expected at least 0.01 CPUs", value)
    return int(cpus * 10**9)


def check_pids_limit(value: int) -> int:
    """A process limit: 1 or more, or -1 for none."""
    if value < 1 and value != -1:
        raise problem("pids_limit", "expected a number of processes >= 1 (or -1: none)", value)
    return value


def parse_nanoseconds(value: Any) -> int:
    """Compose's durations (`1m30s`, `500ms`) or a number of seconds, as nanoseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise problem("duration", "expected a duration like 30s or 1m30s", value)
        nanoseconds = int(Decimal(str(value)) * 10**9)
    elif isinstance(value, str) and re.fullmatch(f"(?:{DURATION_PART.pattern})+", value):
        nanoseconds = sum(
            int(Decimal(number) * DURATION_UNITS[unit])
            for number, unit in DURATION_PART.findall(value)
        )
    else:
        raise problem("duration", "expected a duration like 30s or 1m30s", value)
    if 0 < nanoseconds < MIN_HEALTH_DURATION or nanoseconds > MAX_DURATION:
        raise problem("duration", "expected 0 (the image's) or from 1ms to 24h", value)
    return nanoseconds


def parse_stop_signal(value: Any) -> str:
    """`QUIT`, `sigquit`, `SIGQUIT` -> `SIGQUIT`; a number stays a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise problem("signal", "expected a signal like SIGTERM, QUIT or 3", value)
    if value.isdigit():
        if not 1 <= int(value) <= 64:
            raise problem("signal", "expected a signal number from 1 to 64", value)
        return value
    name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
    if name not in signal.Signals.__members__ and not REALTIME_SIGNAL.match(name):
        raise problem("signal", "expected a signal like SIGTERM, QUIT or 3", value)
    return name


def parse_user(value: Any) -> str:
    """`1000`, `1000:1000`, `app`, `app:app` (YAML numbers become text)."""
    text = parse_text(value)
    if not USER.match(text):
        raise problem("user", "expected a user like 1000, 1000:1000 or app:app", value)
    return str(text)


def as_list(value: Any) -> Any:
    """One string, or a list of them, as a list."""
    return [value] if isinstance(value, str) else value


def parse_tmpfs(value: Any) -> Any:
    """`/run` or `/run:size=64m,mode=1777` (docker run --tmpfs), one or a list: path -> options."""
    mounts: dict[str, str] = {}
    for entry in as_list(value) if isinstance(value, list | str) else [value]:
        if not isinstance(entry, str):
            raise problem("tmpfs", "expected a path like /run or /run:size=64m", entry)
        path, _, options = entry.partition(":")
        mounts[absolute_path(path)] = options
    return mounts


def parse_key_values(value: Any, what: str, separators: str) -> Any:
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
            raise problem(what, f"expected a mapping or a list of {example}", entry)
        pairs[entry[: min(found)]] = entry[min(found) + 1 :]
    return pairs


def parse_labels(value: Any) -> Any:
    """Labels as a mapping, or Compose's list of `name=value`."""
    return parse_key_values(value, "labels", "=")


def parse_extra_hosts(value: Any) -> Any:
    """Hosts as a mapping, or a list of `name:address` / `name=address`."""
    return parse_key_values(value, "extra_hosts", "=:")


def parse_host_address(value: str) -> str:
    """An IP address (IPv6 with or without brackets), or `host-gateway`."""
    if value == "host-gateway":
        return value
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        raise problem("address", "expected an IP address or host-gateway", value) from None


Nanoseconds = Annotated[int, BeforeValidator(parse_nanoseconds)]
Memory = Annotated[int, BeforeValidator(parse_memory)]  # bytes
NanoCpus = Annotated[int, BeforeValidator(parse_nano_cpus)]  # 1.5 CPUs -> 1_500_000_000
PidsLimit = Annotated[int, AfterValidator(check_pids_limit)]
StopSignal = Annotated[str, BeforeValidator(parse_stop_signal)]
User = Annotated[str, BeforeValidator(parse_user)]
Tmpfs = Annotated[dict[str, str], BeforeValidator(parse_tmpfs)]  # path -> mount options
