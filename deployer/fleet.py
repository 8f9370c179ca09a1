"""Which containers (or Swarm endpoints) serve each service now, and the nginx switch that
changes them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from deployer.backends.base import ContainerInfo
from deployer.models import Endpoint, Server, Upstream, utc_now

Applied = TypeVar("Applied")
Member = ContainerInfo | Endpoint  # what nginx sends traffic to: a container, a Swarm endpoint


@dataclass(frozen=True)
class Serving:
    """What serves a service (its replicas, one release; during a Swarm update the old and the
    new release's endpoints), and since when. The first member's digest is the release's."""

    members: tuple[Member, ...]
    since: datetime

    @property
    def containers(self) -> tuple[ContainerInfo, ...]:
        """The containers (a container service's members; none for a Swarm service)."""
        return tuple(member for member in self.members if isinstance(member, ContainerInfo))

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The Swarm endpoints (none for a container service)."""
        return tuple(member for member in self.members if isinstance(member, Endpoint))

    @property
    def digest(self) -> str:
        return self.members[0].digest

    @property
    def ids(self) -> set[str]:
        return {member.id for member in self.members}

    @property
    def names(self) -> str:
        """`web-1a2b, web-3c4d`: for messages."""
        return ", ".join(member.name for member in self.members)


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

    def upstreams(self, replace: Mapping[str, Sequence[Member]] | None = None) -> list[Upstream]:
        """One upstream per configured service, with `replace` standing in for current ones."""
        current = {name: serving.members for name, serving in self._serving.items()}
        current.update({name: tuple(members) for name, members in (replace or {}).items()})
        return [_upstream(name, current.get(name, ())) for name in self._services]

    def switch(
        self,
        service: str,
        containers: Sequence[Member],
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

    def adopt(self, service: str, containers: Sequence[Member], since: datetime) -> None:
        """Record containers found running at start (nginx is re-rendered afterwards)."""
        with self._switching:
            self._serving = {**self._serving, service: Serving(tuple(containers), since)}


def _upstream(service: str, members: Sequence[Member]) -> Upstream:
    servers = (_server(member) for member in members)
    return Upstream(service, tuple(sorted(servers, key=lambda server: server.address)))


def _server(member: Member) -> Server:
    if isinstance(member, Endpoint):
        return Server(member.address, member.name, member.digest, member.parameters, member.kind)
    return Server(member.address, member.name, member.digest)
