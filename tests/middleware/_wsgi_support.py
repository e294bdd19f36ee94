"""Shared models and small helpers for the mpsqlite_wsgi tests."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import ForeignKey, String, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

PLAIN = [("Content-Type", "text/plain; charset=utf-8")]

#: An exception ignored in a finalizer fails the test (a connection or session of ours
#: left to the garbage collector), except cheroot's own on Python 3.13: its buffered
#: writer flushes into the socket it closed (cherrypy/cheroot#734).
UNRAISABLE_FAILS = pytest.mark.filterwarnings(
    "error::pytest.PytestUnraisableExceptionWarning",
    r"ignore:(?s)Exception ignored in.*IOBase.__del__.*cheroot/makefile\.py"
    r".*Bad file descriptor:pytest.PytestUnraisableExceptionWarning",
)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "wsgi_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class Child(Base):
    """Has a deferred foreign key, so a dangling reference fails at COMMIT time."""

    __tablename__ = "wsgi_children"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(
        ForeignKey("wsgi_items.id", deferrable=True, initially="DEFERRED")
    )


def names(engine: Engine) -> list[str]:
    """Item names as seen by a fresh connection (i.e. what was committed)."""
    with engine.connect() as conn:
        return sorted(conn.scalars(select(Item.name)))


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count(Item.id)))


class CheckoutCounter:
    """Counts pool checkouts of an engine (a checkout is the first real database work)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self._lock = threading.Lock()
        event.listen(engine, "checkout", self._on_checkout)

    def _on_checkout(self, *args: Any) -> None:
        with self._lock:
            self.count += 1


class ClosingIterable:
    """An app iterable that records how often close() was called."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = iter(chunks)
        self.closed = 0

    def __iter__(self) -> ClosingIterable:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self.closed += 1
