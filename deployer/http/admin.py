"""The admin API: deploy now and roll back, behind `Authorization: Bearer <admin token>`.

The token comes from the environment variable `admin.token_env` names; without it the API
answers 503 saying how to turn it on. 401 without credentials, 403 for a wrong token (compared
in constant time). Work goes through the same queue as webhooks: 202 with the deployment.
"""

from __future__ import annotations

from typing import TypeVar

from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field

from deployer.config import DOCKER_TAG
from deployer.documents import deployment_json
from deployer.errors import ContainerMissing, Forbidden, NotFound, Unauthorized, Unavailable
from deployer.http.auth import presented
from deployer.http.context import current_runtime
from deployer.models import Deployment, DeploymentState
from deployer.payloads import load_json, to_model
from deployer.webhooks import token_matches

blueprint = Blueprint("admin", __name__)
DIGEST = r"^sha256:[0-9a-f]{64}$"
Model = TypeVar("Model", bound=BaseModel)


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tag: str | None = Field(default=None, pattern=DOCKER_TAG)


class AdoptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    container: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    port: int | None = Field(default=None, ge=1, le=65535)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digest: str | None = Field(default=None, pattern=DIGEST)


@blueprint.before_request
def authenticate() -> None:
    """503 when the API is off, 401 without a bearer token, 403 with a wrong one."""
    current = current_runtime()
    if not current.admin_token:
        raise Unavailable(
            f"admin API is disabled: set the environment variable "
            f"{current.config.admin.token_env} (admin.token_env) for deployer serve"
        )
    found = presented()
    if found is None or found[0] != "bearer":
        raise Unauthorized(
            "send the admin token as `Authorization: Bearer <token>`",
            'Bearer realm="deployer admin"',
        )
    if not token_matches(found[1], current.admin_token):
        raise Forbidden("wrong admin token")


def parse_body(model: type[Model]) -> Model:
    """The JSON body as `model` (an empty body means all defaults); BadRequest names the field."""
    raw = request.get_data(cache=False)
    return to_model(model, load_json(raw) if raw.strip() else {})


def queued(deployment: Deployment) -> tuple[Response, int]:
    """202 with the deployment, and its URL in Location."""
    response = jsonify(deployment_json(deployment))
    response.headers["Location"] = url_for("status.deployment", deployment_id=deployment.id)
    return response, 202


def known_service(name: str) -> str:
    if name not in current_runtime().config.services:
        raise NotFound(f"no service named {name!r} is configured")
    return name


@blueprint.post("/services/<name>/deploy")
def deploy(name: str) -> tuple[Response, int]:
    """Resolve the tag (default: the one the service follows) and deploy it, through the queue."""
    current = current_runtime()
    known_service(name)
    body = parse_body(DeployRequest)
    tag = body.tag or current.config.services[name].tag
    return queued(current.deploy_now(name, tag, f"admin deploy {tag} from {request.remote_addr}"))


@blueprint.post("/services/<name>/adopt")
def adopt(name: str) -> tuple[Response, int]:
    """Take over a container someone runs by hand as what serves `name` (201), or 409 why not."""
    known_service(name)
    body = parse_body(AdoptRequest)
    trigger = f"admin adopt {body.container} from {request.remote_addr}"
    try:
        deployment = current_runtime().take_over(name, body.container, body.port, trigger)
    except ContainerMissing as err:
        raise NotFound(str(err)) from None
    response, _ = queued(deployment)
    return response, 201 if deployment.state is DeploymentState.SUCCEEDED else 409


@blueprint.post("/services/<name>/rollback")
def rollback(name: str) -> tuple[Response, int]:
    """Deploy exactly `digest` (default: the previous succeeded deployment's), recorded as usual."""
    known_service(name)
    body = parse_body(RollbackRequest)
    trigger = f"admin rollback from {request.remote_addr}"
    return queued(current_runtime().rollback(name, body.digest, trigger))
