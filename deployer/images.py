"""Images per service: keep the last N deployed ones on the engine, and pick rollback targets.

Keeping images means a rollback needs no registry: the pull step finds image@digest on the
engine. Older images (and those of failed releases) are removed after each success.
"""

from __future__ import annotations

import logging

from deployer.backends.base import Backend
from deployer.errors import DockerError
from deployer.store import Store

log = logging.getLogger(__name__)


def images_to_prune(deployed: list[str], seen: list[str], keep: int) -> list[str]:
    """Digests in `seen` that are not among the newest `keep` deployed ones (pure)."""
    kept = set(deployed[:keep])
    return [digest for digest in seen if digest not in kept]


def prune_images(backend: Backend, store: Store, service: str, image: str, keep: int) -> list[str]:
    """Remove the engine's images of service beyond the newest `keep` deployed; return them."""
    removed = []
    candidates = images_to_prune(
        store.digests(service, succeeded_only=True), store.digests(service, False), keep
    )
    for digest in candidates:
        try:
            if backend.has_image(image, digest):
                backend.remove_image(image, digest)
                removed.append(digest)
        except DockerError as err:
            log.warning("%s: keeping image %s@%s: %s", service, image, digest, err)
    if removed:
        log.info("%s: removed %d old image(s), kept the newest %d", service, len(removed), keep)
    return removed


def rollback_target(store: Store, service: str, current: str | None) -> str | None:
    """The digest of the newest succeeded deployment that is not the one serving now."""
    return next(
        (digest for digest in store.digests(service, succeeded_only=True) if digest != current),
        None,
    )
