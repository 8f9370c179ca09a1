"""Docker Hub push webhooks: parse(body) -> PushEvent.

Only `push_data.tag` and `repository.repo_name` are used; everything else (callback_url,
images: null, pusher, ...) is accepted and ignored. The payload has no digest and no signature:
it is a hint, and the deployment resolves the tag at the registry again.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from deployer.config import DOCKER_TAG
from deployer.errors import BadWebhook
from deployer.models import PushEvent
from deployer.payloads import load_json, to_model

SOURCE = "dockerhub"


class _PushData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tag: str = Field(pattern=DOCKER_TAG)  # a Docker tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    pusher: str | None = None


class _Repository(BaseModel):
    model_config = ConfigDict(extra="ignore")
    repo_name: str = Field(min_length=1, max_length=255, pattern=r"^[a-z0-9][a-z0-9._/-]*$")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    push_data: _PushData
    repository: _Repository


def parse(body: bytes) -> PushEvent:
    """The push described by a Docker Hub webhook body; BadWebhook names what is wrong."""
    payload = to_model(_Payload, load_json(body, BadWebhook), BadWebhook)
    return PushEvent(
        source=SOURCE,
        repository=payload.repository.repo_name,
        tag=payload.push_data.tag,
        pusher=payload.push_data.pusher or "",
    )
