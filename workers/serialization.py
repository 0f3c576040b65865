"""Encode parameters and results as envelopes: JSON by default, pickle only on request.

An envelope is ``{"serializer": "json", "value": <JSON>}`` or ``{"serializer": "pickle",
"value": "<base64>"}``. JSON is the default because a JSON envelope can be read by any
process and by a person with redis-cli, and decoding it cannot run code. Unpickling runs
whatever code the pickle names, so a task should ask for pickle only when every process
that can write to its Redis and its database is trusted.
"""

from __future__ import annotations

import base64
import json
import math
import pickle
from collections.abc import Mapping
from typing import Any, Literal

from queue_server.protocol import Envelope
from workers.errors import SerializationError

SerializerName = Literal["json", "pickle"]
SERIALIZERS: tuple[SerializerName, ...] = ("json", "pickle")


def encode_value(value: Any, serializer: SerializerName, *, what: str = "value") -> Envelope:
    """Encode one value; raise SerializationError naming `what` when it cannot be encoded."""
    if serializer == "json":
        _check_json(value, what)
        return Envelope(serializer="json", value=value)
    if serializer == "pickle":
        try:
            raw = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise SerializationError(f"{what} cannot be pickled: {error}", what) from error
        return Envelope(serializer="pickle", value=base64.b64encode(raw).decode("ascii"))
    raise SerializationError(f"unknown serializer {serializer!r}: use one of {SERIALIZERS}")


def encode_parameters(parameters: Mapping[str, Any], serializer: SerializerName) -> Envelope:
    """Encode bound call parameters, naming the first argument that cannot be encoded."""
    if serializer == "json":
        for name, value in parameters.items():
            _check_json(value, f"argument {name!r}")
        return Envelope(serializer="json", value=dict(parameters))
    for name, value in parameters.items():
        encode_value(value, serializer, what=f"argument {name!r}")
    return encode_value(dict(parameters), serializer, what="parameters")


def decode_value(envelope: Envelope | Mapping[str, Any], *, allow_pickle: bool) -> Any:
    """Decode an envelope; a pickle envelope is decoded only when `allow_pickle` is true."""
    if not isinstance(envelope, Envelope):
        envelope = Envelope.model_validate(envelope)
    if envelope.serializer == "json":
        return envelope.value
    if not allow_pickle:
        raise SerializationError(
            "the value is a pickle, and unpickling runs code: pass allow_pickle=True "
            "only if you trust every writer of this Redis and database"
        )
    try:
        return pickle.loads(base64.b64decode(envelope.value))
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise SerializationError(f"the pickled value cannot be loaded: {error}") from error


def envelope_size(envelope: Envelope) -> int:
    """Return the size in bytes of the envelope as it travels, in compact JSON."""
    return len(envelope.model_dump_json().encode())


def _check_json(value: Any, what: str) -> None:
    """Raise SerializationError naming the path inside `what` that JSON cannot carry as it is.

    Tuples are rejected too, because they would come back as lists, and so are
    non-string dict keys and non-finite floats, which would not round-trip either.
    """
    problem = _find_json_problem(value, what)
    if problem:
        raise SerializationError(
            f"{problem}; pass JSON values (dict with str keys, list, str, int, float, bool, "
            "None) or declare the task with serializer='pickle'",
            what,
        )


def _find_json_problem(value: Any, path: str) -> str | None:
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value}, which JSON cannot encode"
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _find_json_problem(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r} of type {type(key).__name__}; JSON keys are str"
            problem = _find_json_problem(item, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    return f"{path} of type {type(value).__qualname__} is not JSON-serializable"


def dumps_compact(value: Any) -> str:
    """Dump JSON the way envelopes are sent: compact and UTF-8 as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
