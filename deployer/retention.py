"""History retention: prune each service's old deployments, keeping what still matters.

`history.keep_per_service` newest deployments stay (and with `history.max_age_days`, none
older than that, beyond those that must stay). Never pruned: a deployment that is queued or
running, one whose container is on the engine (it may serve, or be rolled back to), and the
newest succeeded deployment of each image kept for rollbacks (`keep_images`), since a rollback
finds its digest in the history.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import timedelta

from deployer.config import Config
from deployer.models import utc_now
from deployer.store import Store

log = logging.getLogger(__name__)


def prune_history(
    config: Config, store: Store, service: str, containers_of: Collection[str]
) -> int:
    """Prune one service's history; `containers_of`: deployment ids of containers on the engine.
    Returns how many deployments were deleted."""
    settings, keep_images = config.history, config.services[service].keep_images
    kept_digests = store.digests(service, succeeded_only=True)[:keep_images]
    protected = set(containers_of) | set(store.newest_with(service, kept_digests))
    older_than = (
        utc_now() - timedelta(days=settings.max_age_days) if settings.max_age_days else None
    )
    removed = store.prune(service, settings.keep_per_service, older_than, protected)
    if removed:
        log.info("%s: pruned %d old deployment(s) from the history", service, removed)
    return removed
