"""Which containers serve each service now, and the nginx switch that changes them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from deployer.backends.base import ContainerInfo
from deployer.models import Server, Upstream, utc_now

Applied = TypeVar("Applied")


@dataclass(frozen=True)
class Serving:
    """The containers serving a service (its replicas, one release), and since when."""

    containers: tuple[ContainerInfo, ...]
    since: datetime

    @property
    def digest(self) -> str:
        return self.containers[0].digest

    @property
    def ids(self) -> set[str]:
        return {container.id for container in self.containers}

    @property
    def names(self) -> str:
        """`web-1a2b, web-3c4d`: for messages."""
        return ", ".join(container.name for container in self.containers)


class Fleet:
    """The serving containers per service.

    Switches are serialised (so a render never goes stale) by a lock that readers never take:
    the mapping is replaced whole once a switch succeeded, so /status, /metrics and the page
    never wait on `nginx -t`, a reload or its confirmation.
    """

    def __init__(self, services: Iterable[str]) -> None:
        self._services = sorted(services)
        self._serving: Mapping[str, Serving] = {}
        self._switching = threading.Lock()

    def serving(self, service: str) -> Serving | None:
        return self._serving.get(service)

    def upstreams(
        self, replace: Mapping[str, Sequence[ContainerInfo]] | None = None
    ) -> list[Upstream]:
        """One upstream per configured service, with `replace` standing in for current ones."""
        current = {name: serving.containers for name, serving in self._serving.items()}
        current.update({name: tuple(containers) for name, containers in (replace or {}).items()})
        return [_upstream(name, current.get(name, ())) for name in self._services]

    def switch(
        self,
        service: str,
        containers: Sequence[ContainerInfo],
        apply: Callable[[Sequence[Upstream]], Applied],
        since: datetime | None = None,
    ) -> Applied:
        """Apply the upstreams with `containers` serving `service`; record them only on
        success. Returns what apply returned."""
        with self._switching:
            applied = apply(self.upstreams({service: containers}))
            serving = Serving(tuple(containers), since or utc_now())
            self._serving = {**self._serving, service: serving}
            return applied

    def adopt(self, service: str, containers: Sequence[ContainerInfo], since: datetime) -> None:
        """Record containers found running at start (nginx is re-rendered afterwards)."""
        with self._switching:
            self._serving = {**self._serving, service: Serving(tuple(containers), since)}


def _upstream(service: str, containers: Sequence[ContainerInfo]) -> Upstream:
    servers = (Server(c.address, c.name, c.digest) for c in containers)
    return Upstream(service, tuple(sorted(servers, key=lambda server: server.address)))
