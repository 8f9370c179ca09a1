"""What the numbers were measured on: CPU, memory, Docker, nginx and the other tools."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path


def version_of(argv: list[str]) -> str:
    """The first line a `--version`-like command prints (stdout or stderr); '' when absent."""
    if shutil.which(argv[0]) is None:
        return ""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = (result.stdout.strip() or result.stderr.strip()).splitlines()
    return lines[0] if lines else ""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. `0.15 0.08 0.07`."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine(extra_tools: list[list[str]] | None = None) -> list[str]:
    """Markdown bullet lines: date, machine, engine, nginx, Python and `extra_tools` versions."""
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    docker = version_of(["docker", "version", "--format", "{{.Server.Version}}"])
    tools = [f"Docker Engine {docker}", version_of(["nginx", "-v"])]
    tools += [version_of(argv) for argv in extra_tools or []]
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs ({cpu_model()}), "
        f"{memory_kb // 1024} MiB RAM",
        f"- {', '.join(tool for tool in tools if tool)}, Python {platform.python_version()}",
    ]
