"""Which credentials go to a registry, and what a refusal says (pure: no `docker` import).

deployer's own `registries:` entry for the image's registry host wins; otherwise the Docker
client config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) is read by the
Docker adapter. Either way the adapter sends exactly the credentials chosen (none: an explicit
anonymous request), so a refusal can say what was tried. Descriptions name where credentials
came from (a config key, a variable's name, a file, a helper), never a user name or secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deployer.config import DOCKER_HUB, RegistryConfig

DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})
# What engines and registries answer when credentials are missing or wrong (not any "denied":
# "open /var/lib/docker/...: permission denied" is the engine's own trouble).
REFUSAL = re.compile(
    r"unauthori[sz]ed|no basic auth credentials|authentication required|\bforbidden\b"
    r"|access denied|resource is denied|\bdenied:",
    re.IGNORECASE,
)
# The engine prefixes a registry's answer with the request it made: `Head "https://...": `.
REQUEST_PREFIX = re.compile(r'^(?:[A-Za-z]+ "[^"]*": )+')


@dataclass(frozen=True)
class Credentials:
    """What is sent to `registry` (empty `auth`: nothing), and `source` saying where from."""

    registry: str
    source: str
    auth: Mapping[str, str] = field(default_factory=dict, repr=False)


class RegistryLogins:
    """deployer's `registries:` entries, read from `environ`; and where the Docker client
    config is for this environment."""

    def __init__(
        self,
        registries: Mapping[str, RegistryConfig] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.registries = dict(registries or {})
        self.environ = os.environ if environ is None else environ

    def configured(self, registry: str) -> Credentials | None:
        """Credentials from deployer's own `registries:` entry for registry, if it has one."""
        for host, entry in self.registries.items():
            if same_registry(host, registry):
                return Credentials(
                    registry,
                    f'registries."{host}" (username from ${entry.username_env}, '
                    f"password from ${entry.password_env})",
                    {
                        "username": self.environ.get(entry.username_env, ""),
                        "password": self.environ.get(entry.password_env, ""),
                        "serveraddress": registry,
                    },
                )
        return None

    @property
    def docker_config(self) -> Path:
        """The Docker client config file: `$DOCKER_CONFIG/config.json`, else the home's."""
        directory = self.environ.get("DOCKER_CONFIG")
        if directory:
            return Path(directory) / "config.json"
        home = self.environ.get("HOME")
        return (Path(home) if home else Path.home()) / ".docker" / "config.json"


def same_registry(first: str, second: str) -> bool:
    """True when two registry hosts name the same registry (Docker Hub has several names)."""
    if first.lower() in DOCKER_HUB_ALIASES and second.lower() in DOCKER_HUB_ALIASES:
        return True
    return first.lower() == second.lower()


def anonymous(registry: str, docker_config: Path) -> Credentials:
    """No credentials anywhere: the request goes out without any."""
    where = f"the Docker client config {docker_config}"
    if not docker_config.exists():
        where += " (no such file)"
    return Credentials(registry, f"no credentials (none in deployer's registries: nor in {where})")


def from_docker_config(registry: str, docker_config: Path, helper: str | None) -> str:
    """The description of credentials the Docker client config gave (helper: which one)."""
    via = f"auths entry for {registry}"
    if helper:
        via = f"credential helper docker-credential-{helper}"
    return f"the Docker client config {docker_config} ({via})"


def is_refusal(text: str) -> bool:
    """True when an engine or registry error says credentials are missing or wrong."""
    return REFUSAL.search(text) is not None


def refused(reference: str, reason: str, credentials: Credentials) -> str:
    """The message for a registry that refused reference, naming what was tried."""
    return (
        f"registry {credentials.registry} refused {reference}: "
        f"{REQUEST_PREFIX.sub('', reason.strip())}; tried: {credentials.source}; "
        "fix the credentials or docker login"
    )
