"""Bind a call's arguments to the task's signature, and turn stored parameters back into a call.

Parameters are stored by name, so a run can be read and retried by any process. A
``*args`` parameter is stored as a list and a ``**kwargs`` parameter as a dict, and both
are spread again when the function is called.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from workers.errors import ArgumentError

# inspect's bind() names the offending argument in quotes, as in "missing a required
# argument: 'x'" or "got an unexpected keyword argument 'y'".
QUOTED_NAME = re.compile(r"'([^']+)'")


def bind_arguments(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the call's parameters by name, with defaults; raise ArgumentError naming a bad one."""
    signature = inspect.signature(function)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        match = QUOTED_NAME.search(str(error))
        name = match.group(1) if match else None
        raise ArgumentError(
            f"invalid arguments for {function.__qualname__}{signature}: {error}", name
        ) from None
    bound.apply_defaults()

    parameters: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        parameters[name] = list(value) if kind is inspect.Parameter.VAR_POSITIONAL else value
    return parameters


def call_arguments(
    function: Callable[..., Any], parameters: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Return the positional and keyword arguments that call `function` with `parameters`.

    Raise ArgumentError naming a parameter that the signature does not accept or that is
    missing, which happens when the task's code changed after the run was submitted.
    """
    signature = inspect.signature(function)
    unknown = sorted(set(parameters) - set(signature.parameters))
    if unknown:
        raise ArgumentError(
            f"stored parameter {unknown[0]!r} is not a parameter of {function.__qualname__}"
            f"{signature}",
            unknown[0],
        )

    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    skipped = False  # after a skipped positional parameter, the rest go by keyword
    for name, parameter in signature.parameters.items():
        if name not in parameters:
            skipped = True
            if parameter.default is inspect.Parameter.empty and parameter.kind not in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            ):
                raise ArgumentError(
                    f"stored parameters lack the required argument {name!r} of "
                    f"{function.__qualname__}{signature}",
                    name,
                )
            continue
        value = parameters[name]
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            args.extend(value)
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            kwargs.update(value)
        elif parameter.kind is inspect.Parameter.KEYWORD_ONLY or (
            skipped and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ):
            kwargs[name] = value
        else:
            args.append(value)
    return args, kwargs
