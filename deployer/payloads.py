"""Request bodies into typed models: JSON with a depth guard, pydantic's first error as one line.

Used at every edge that takes JSON (webhook sources, the admin API), so a hostile body gets a
400 naming what is wrong and never a traceback.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from deployer.errors import BadRequest

Model = TypeVar("Model", bound=BaseModel)


def load_json(raw: bytes, error: type[BadRequest] = BadRequest) -> Any:
    """The JSON value in raw; `error` saying why when it is not valid JSON."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"body is not valid JSON: {err}") from None
    except RecursionError:
        raise error("body is nested too deeply") from None


def to_model(model: type[Model], data: Any, error: type[BadRequest] = BadRequest) -> Model:
    """data validated as model; `error` naming the first field that is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(body)"
        message = first["msg"]  # only its first letter lowered: it may quote a pattern
        raise error(f"{where}: {message[:1].lower()}{message[1:]}") from None
