"""Parse and validate the connect options of the mpsqlite dialect.

Options come from two places: the URL query string (always strings, coerced
here) and ``create_engine(connect_args=...)`` (Python values, checked here).
Anything unknown or malformed raises :class:`sqlalchemy.exc.ArgumentError`
naming the option, instead of being silently ignored or failing later inside
a worker process.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import exc

BEGIN_MODES = ("write", "deferred", "immediate", "exclusive", "driver")
"""Values of the ``begin`` option; see the dialect module's documentation."""

# SQLite's own URI parameters (https://www.sqlite.org/uri.html); they are only
# meaningful with ``uri=true``, where they are appended to the file name.
SQLITE_URI_PARAMS = frozenset({"vfs", "mode", "cache", "psow", "nolock", "immutable", "modeof"})

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _to_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected one of true/false/1/0/yes/no/on/off")


def _to_positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("expected a positive integer")
    return number


def _to_int(value: str) -> int:
    return int(value)


def _to_float(value: str) -> float:
    return float(value)


def _to_str(value: str) -> str:
    return value


def _to_begin(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in BEGIN_MODES:
        raise ValueError("expected one of " + ", ".join(BEGIN_MODES))
    return lowered


# Driver options accepted in the URL and the coercion applied to each; the
# pool options of mpsqlite.connect() that are not listed are added by
# _driver_coercions() from the function's signature.
_KNOWN_DRIVER_OPTIONS: dict[str, Callable[[str], Any]] = {
    "workers": _to_positive_int,
    "timeout": _to_float,
    "detect_types": _to_int,
    "check_same_thread": _to_bool,
    "cached_statements": _to_int,
    "uri": _to_bool,
    "isolation_level": _to_str,
}

# Options consumed by the dialect itself, never passed to mpsqlite.connect().
DIALECT_OPTIONS: dict[str, Callable[[str], Any]] = {"begin": _to_begin}

# connect() options in seconds that must be positive, or None for no limit.
_POSITIVE_SECONDS = frozenset({"statement_timeout", "log_slow_statements"})

# connect() parameters that the dialect decides and a user may not pass.
_RESERVED = frozenset({"database", "factory", "autocommit"})


def _optional(coerce: Callable[[str], Any]) -> Callable[[str], Any]:
    def coerce_or_none(value: str) -> Any:
        return None if value.strip().lower() in ("none", "null") else coerce(value)

    return coerce_or_none


def _coercion_for(param: inspect.Parameter) -> Callable[[str], Any] | None:
    """Coercion for a connect() parameter from its default or annotation; None: not URL-able."""
    annotation = param.annotation if isinstance(param.annotation, str) else ""
    base = annotation.replace(" ", "").split("|")
    kinds = {"bool": _to_bool, "int": _to_int, "float": _to_float, "str": _to_str}
    coerce: Callable[[str], Any] | None = None
    default = param.default
    if isinstance(default, bool):
        coerce = _to_bool
    elif isinstance(default, int):
        coerce = _to_int
    elif isinstance(default, float):
        coerce = _to_float
    elif isinstance(default, str):
        coerce = _to_str
    elif base and base[0] in kinds:
        coerce = kinds[base[0]]
    if coerce is None:
        return None
    return _optional(coerce) if "None" in base or default is None else coerce


def connect_parameters(connect: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """Return the keyword parameters ``connect`` accepts, by name."""
    try:
        signature = inspect.signature(connect)
    except (TypeError, ValueError):  # a builtin without a signature
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n: p for n, p in signature.parameters.items() if p.kind in kinds}


def _driver_coercions(connect: Callable[..., Any]) -> dict[str, Callable[[str], Any]]:
    coercions = dict(_KNOWN_DRIVER_OPTIONS)
    for name, param in connect_parameters(connect).items():
        if name not in coercions and name not in _RESERVED:
            coerce = _coercion_for(param)
            if coerce is not None:
                coercions[name] = coerce
    return coercions


def _invalid(name: str, value: Any, why: str) -> exc.ArgumentError:
    return exc.ArgumentError(f"Invalid value {value!r} for mpsqlite option {name!r}: {why}")


def parse_url_query(
    query: Mapping[str, str | tuple[str, ...]], connect: Callable[..., Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """Split a URL query into (driver kwargs, dialect options, SQLite URI params).

    Raises ArgumentError for an unknown name, a repeated name or a value that
    does not coerce to the option's type.
    """
    driver_coercions = _driver_coercions(connect)
    uri = False
    if "uri" in query:
        uri = _coerce("uri", query["uri"], _to_bool)
    driver: dict[str, Any] = {}
    dialect: dict[str, Any] = {}
    uri_params: dict[str, str] = {}
    for name, raw in query.items():
        if name in DIALECT_OPTIONS:
            dialect[name] = _coerce(name, raw, DIALECT_OPTIONS[name])
        elif name in driver_coercions:
            driver[name] = _coerce(name, raw, driver_coercions[name])
        elif uri and name in SQLITE_URI_PARAMS:
            uri_params[name] = _single(name, raw)
        else:
            raise exc.ArgumentError(_unknown_message(name, driver_coercions, uri))
    return driver, dialect, uri_params


def _single(name: str, raw: str | tuple[str, ...]) -> str:
    if isinstance(raw, tuple):
        raise exc.ArgumentError(f"mpsqlite option {name!r} is given more than once in the URL")
    return raw


def _coerce(name: str, raw: str | tuple[str, ...], coerce: Callable[[str], Any]) -> Any:
    value = _single(name, raw)
    try:
        return coerce(value)
    except ValueError as err:
        raise _invalid(name, value, str(err) or "wrong type") from None


def _unknown_message(name: str, known: Iterable[str], uri: bool) -> str:
    allowed = sorted(set(known) | set(DIALECT_OPTIONS))
    message = f"Unknown mpsqlite option {name!r} in the URL; known options: {', '.join(allowed)}"
    if name in SQLITE_URI_PARAMS:
        message += f"; SQLite URI parameter {name!r} also needs uri=true"
    else:
        message += "; with uri=true also: " + ", ".join(sorted(SQLITE_URI_PARAMS))
    return message


def check_connect_kwargs(kwargs: Mapping[str, Any], connect: Callable[..., Any]) -> None:
    """Validate the keyword arguments about to be passed to ``mpsqlite.connect``.

    These include ``connect_args``, which SQLAlchemy merges in unchecked.
    """
    params = connect_parameters(connect)
    for name, value in kwargs.items():
        if params and name not in params:
            raise exc.ArgumentError(
                f"Unknown mpsqlite connect argument {name!r}; mpsqlite.connect() accepts: "
                + ", ".join(sorted(params))
            )
        if name == "workers" and value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _invalid(name, value, "expected a positive integer or None")
        elif name == "timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise _invalid(name, value, "expected a non-negative number of seconds")
        elif name in _POSITIVE_SECONDS and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise _invalid(name, value, "expected a positive number of seconds or None")
