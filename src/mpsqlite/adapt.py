"""Turns caller parameters into values that can cross to a worker process.

sqlite3 adapts parameters (``register_adapter``, ``__conform__``) in the
process that runs the statement; here that is the caller, so the adapters
registered in the caller's ``sqlite3`` module apply exactly as they would
there, and only plain values (int, float, str, bytes, None) are sent.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Mapping
from typing import Any

_NATIVE = frozenset({int, float, str, bytes, type(None)})
_PROTO = sqlite3.PrepareProtocol
# sqlite3 raised ValueError here before Python 3.11.
_UNSUPPORTED = sqlite3.ProgrammingError if sys.version_info >= (3, 11) else ValueError


def adapt_params(params: Any) -> Any:
    """Adapt one set of parameters; ``None`` means the statement has none."""
    if params is None:
        return None
    t = type(params)
    if t is tuple or t is list:
        for v in params:
            if type(v) not in _NATIVE:
                return tuple(_value(v, params, i) for i, v in enumerate(params))
        return params
    if isinstance(params, dict):
        return {k: (v if type(v) in _NATIVE else _value(v, params, k)) for k, v in params.items()}
    if isinstance(params, Mapping) or not hasattr(params, "__getitem__") or not hasattr(
        params, "__len__"
    ):
        raise _UNSUPPORTED("parameters are of unsupported type")
    seq = [params[i] for i in range(len(params))]
    return tuple(_value(v, seq, i) for i, v in enumerate(seq))


def adapt_many(seq_of_params: Any) -> list:
    """Adapt every parameter set of an executemany, materialized for one message."""
    try:
        it = iter(seq_of_params)
    except TypeError:
        raise sqlite3.ProgrammingError("expected a sequence or iterator of parameters") from None
    return [adapt_params(params) for params in it]


def _value(v: Any, params: Any, where: int | str) -> Any:
    adapter = sqlite3.adapters.get((type(v), _PROTO))
    if adapter is not None:
        out = adapter(v)
    else:
        conform = getattr(v, "__conform__", None)
        out = conform(_PROTO) if conform is not None else None
        if out is None:
            out = v
    t = type(out)
    if t in _NATIVE or t is bool:
        return out
    if isinstance(out, int):
        return int(out)
    if isinstance(out, float):
        return float(out)
    if isinstance(out, str):
        return str(out)
    try:
        return bytes(memoryview(out))
    except TypeError:
        pass
    raise _binding_error(v, params, where)


def _binding_error(v: Any, params: Any, where: int | str) -> Exception:
    """The very error sqlite3 raises for this value, from a scratch connection."""
    probe = sqlite3.connect(":memory:")
    try:
        if isinstance(where, str):
            names = list(params)
            sql = "SELECT " + ", ".join(f":{n}" for n in names)
            probe.execute(sql, {n: (v if n == where else None) for n in names})
        else:
            n = len(params)
            values = [None] * n
            values[where] = v
            probe.execute("SELECT " + ", ".join("?" * n), values)
    except sqlite3.Error as exc:
        return exc
    finally:
        probe.close()
    return sqlite3.ProgrammingError(f"type {type(v).__name__!r} is not supported")
