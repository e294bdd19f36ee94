"""tests.core._minidriver with two options, for the reliability tests' ``driver=`` runs.

``connect(database, hold=DIR, foreign_keys=False)``. With ``hold``, ``commit()``
of an open transaction writes the committing process's pid to ``DIR/committing``
and waits until ``DIR/proceed`` exists before it commits (a commit in flight).
``foreign_keys`` turns SQLite's foreign key checks on. Its commit raises the driver's
own classes (the minidriver's lets sqlite3's through), and it has ``in_transaction``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from tests.core import _minidriver
from tests.core._minidriver import (  # noqa: F401 - the driver's module interface
    DatabaseError,
    Error,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    apilevel,
    paramstyle,
    threadsafety,
)

#: How long a held commit waits for the test before it gives up.
HOLD_LIMIT = 60.0


def connect(database: str, hold: str | None = None, foreign_keys: bool = False,
            **kwargs: Any) -> Connection:
    return Connection(database, hold, foreign_keys)


class Connection(_minidriver.Connection):
    def __init__(self, database: str, hold: str | None, foreign_keys: bool) -> None:
        super().__init__(database)
        self._hold = hold
        if foreign_keys:
            self._con.execute("pragma foreign_keys = on")

    @property
    def in_transaction(self) -> bool:
        return self._in_txn

    def commit(self) -> None:
        if self._hold is not None and self._in_txn:
            marker = os.path.join(self._hold, "committing")
            with open(marker + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(marker + ".tmp", marker)
            deadline = time.monotonic() + HOLD_LIMIT
            while not os.path.exists(os.path.join(self._hold, "proceed")):
                if time.monotonic() > deadline:
                    raise OperationalError("the test never let the held commit proceed")
                time.sleep(0.005)
        try:
            super().commit()
        except sqlite3.Error as exc:  # the minidriver's commit lets sqlite3's class through
            raise _minidriver._translate(exc) from None
