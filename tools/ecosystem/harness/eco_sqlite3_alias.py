"""Make ``import sqlite3`` give mpsqlite, for third-party code only.

``install()`` puts a module object under ``sys.modules['sqlite3']`` and
``sys.modules['sqlite3.dbapi2']`` whose attributes are mpsqlite's for every
caller except mpsqlite itself (and its SQLAlchemy dialect): code in modules
named ``mpsqlite*`` / ``sqlalchemy_mpsqlite*`` that reaches ``sqlite3`` by name
at run time (a lazy ``import sqlite3`` in a function, ``importlib.import_module``
of its driver) still gets the standard library's module, so the alias cannot
make mpsqlite call itself.  The caller is the frame doing the attribute
access, so ``Database.connect(...)`` in Django's backend is mpsqlite's
``connect`` while the same attribute read from ``mpsqlite._worker`` is
sqlite3's.

Setting an attribute from the code under test (``mock.patch.object(sqlite3,
"connect", ...)`` in a test) makes an override kept in the alias, seen by its
readers; deleting it (the patch's undo) brings back mpsqlite's.  mpsqlite itself
is never changed: an undo that deleted ``mpsqlite.connect`` would put the rest
of the run on stock sqlite3 unseen.  Nothing missing from
mpsqlite is filled in from sqlite3.  ``dbapi2`` is the alias itself, whatever
mpsqlite's own ``dbapi2`` attribute is (said once on stderr when that is not
mpsqlite: a ``dbapi2`` that is the standard library's would quietly put
Django, which does ``from sqlite3 import dbapi2 as Database``, back on stock
sqlite3).  ``connect`` is counted (``opened()``), so that a run can show that
the code under test really connected through mpsqlite; the JSON object in
``$ECO_MPSQLITE_CONNECT_KWARGS`` (e.g. ``{"workers": 1}``) is added to the
keyword arguments of every such ``connect()``, the caller's own winning.

Only the process that calls ``install()`` is affected: mpsqlite's worker
processes are fresh interpreters that never run this.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import types
from collections import Counter
from typing import Any

_MISSING = object()
_DRIVER_PREFIXES = ("mpsqlite", "sqlalchemy_mpsqlite")
_SKIP_PREFIXES = ("importlib", "eco_sqlite3_alias")
_OWN = frozenset(
    {
        "__dict__", "__class__", "__name__", "__qualname__", "__spec__", "__loader__",
        "__package__", "__path__", "__file__", "__cached__", "__builtins__",
        "_eco_real", "_eco_real_dbapi2", "_eco_fake", "_eco_warned", "_eco_connect",
        "_eco_opened", "_eco_over",
    }
)


def _caller_is_driver(depth: int = 2) -> bool:
    frame = sys._getframe(depth)
    while frame is not None:
        name = frame.f_globals.get("__name__", "") or ""
        if name.startswith(_SKIP_PREFIXES):
            frame = frame.f_back
            continue
        return name.startswith(_DRIVER_PREFIXES)
    return False


class _AliasModule(types.ModuleType):
    def __getattribute__(self, name: str) -> Any:
        if name in _OWN or (name.startswith("__") and name.endswith("__") and name != "__all__"):
            return object.__getattribute__(self, name)
        d = object.__getattribute__(self, "__dict__")
        if _caller_is_driver():
            if name == "dbapi2":
                return d["_eco_real_dbapi2"]
            return getattr(d["_eco_real"], name)
        over = d["_eco_over"]
        if name in over:
            return over[name]
        fake = d["_eco_fake"]
        if name == "dbapi2":
            # The alias stands for "mpsqlite as sqlite3", so its dbapi2 is itself
            # whatever mpsqlite's own dbapi2 is; say once if that one differs.
            if not d["_eco_warned"]:
                d["_eco_warned"] = True
                own = getattr(fake, "dbapi2", None)
                if own is not fake:
                    print(f"[eco] note: mpsqlite.dbapi2 is {own!r}, not mpsqlite; the alias "
                          "answers 'from sqlite3 import dbapi2' with mpsqlite",
                          file=sys.stderr, flush=True)
            return self
        if name == "connect":
            return d["_eco_connect"]
        return getattr(fake, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
            return
        d = object.__getattribute__(self, "__dict__")
        if _caller_is_driver():
            setattr(d["_eco_real"], name, value)
        else:
            d["_eco_over"][name] = value

    def __delattr__(self, name: str) -> None:
        if name in _OWN:
            object.__delattr__(self, name)
            return
        d = object.__getattribute__(self, "__dict__")
        if _caller_is_driver():
            delattr(d["_eco_real"], name)
        elif d["_eco_over"].pop(name, _MISSING) is _MISSING:
            raise AttributeError(f"the sqlite3 alias has no override of {name!r}")

    def __dir__(self) -> list[str]:
        d = object.__getattribute__(self, "__dict__")
        return sorted(set(dir(d["_eco_fake"])) | {"dbapi2"})

    def __repr__(self) -> str:
        d = object.__getattribute__(self, "__dict__")
        return f"<module 'sqlite3' (alias of {d['_eco_fake'].__name__!r} for eco tests)>"


def opened() -> Counter[str]:
    """Connections the code under test opened through the alias, by class."""
    alias = sys.modules.get("sqlite3")
    if isinstance(alias, _AliasModule):
        return object.__getattribute__(alias, "_eco_opened")
    return Counter()


def install() -> types.ModuleType:
    """Alias sqlite3 to mpsqlite in this process; returns the alias module."""
    current = sys.modules.get("sqlite3")
    if isinstance(current, _AliasModule):
        return current
    import sqlite3 as real
    import sqlite3.dbapi2 as real_dbapi2

    import mpsqlite  # imported while sqlite3 is still the real one

    alias = _AliasModule("sqlite3")
    object.__setattr__(alias, "_eco_real", real)
    object.__setattr__(alias, "_eco_real_dbapi2", real_dbapi2)
    object.__setattr__(alias, "_eco_fake", mpsqlite)
    object.__setattr__(alias, "_eco_warned", False)
    object.__setattr__(alias, "_eco_over", {})
    opened: Counter[str] = Counter()
    object.__setattr__(alias, "_eco_opened", opened)

    extra = json.loads(os.environ.get("ECO_MPSQLITE_CONNECT_KWARGS") or "{}")

    @functools.wraps(mpsqlite.connect)
    def connect(database: Any, *args: Any, **kwargs: Any) -> Any:
        con = mpsqlite.connect(database, *args, **{**extra, **kwargs})
        opened[f"{type(con).__module__}.{type(con).__qualname__}"] += 1
        return con

    object.__setattr__(alias, "_eco_connect", connect)
    for attr in ("__spec__", "__loader__", "__path__", "__file__", "__package__"):
        if hasattr(real, attr):
            object.__setattr__(alias, attr, getattr(real, attr))
    sys.modules["sqlite3"] = alias
    sys.modules["sqlite3.dbapi2"] = alias
    return alias
