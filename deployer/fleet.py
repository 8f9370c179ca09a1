"""Which container serves each service now, and the nginx switch that changes it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from deployer.backends.base import ContainerInfo
from deployer.models import Upstream, utc_now

Applied = TypeVar("Applied")


@dataclass(frozen=True)
class Serving:
    """The container serving a service, and since when."""

    container: ContainerInfo
    since: datetime


class Fleet:
    """The serving container per service.

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

    def upstreams(self, replace: dict[str, ContainerInfo] | None = None) -> list[Upstream]:
        """One upstream per configured service, with `replace` standing in for current ones."""
        current = {name: serving.container for name, serving in self._serving.items()}
        current.update(replace or {})
        return [_upstream(name, current.get(name)) for name in self._services]

    def switch(
        self,
        service: str,
        container: ContainerInfo,
        apply: Callable[[Sequence[Upstream]], Applied],
        since: datetime | None = None,
    ) -> Applied:
        """Apply the upstreams with `container` serving `service`; record it only on success.
        Returns what apply returned."""
        with self._switching:
            applied = apply(self.upstreams({service: container}))
            self._serving = {**self._serving, service: Serving(container, since or utc_now())}
            return applied

    def adopt(self, service: str, container: ContainerInfo, since: datetime) -> None:
        """Record a container found running at start (nginx is re-rendered afterwards)."""
        with self._switching:
            self._serving = {**self._serving, service: Serving(container, since)}


def _upstream(service: str, container: ContainerInfo | None) -> Upstream:
    if container is None:
        return Upstream(service)
    return Upstream(service, container.address, container.name, container.digest)
