"""ORM scenario: a mixed SQLAlchemy workload from several threads, ``sqlite://`` vs ``sqlite+mpsqlite://``.

Each operation opens a Session (as a web request would) and does one of: get a book by primary
key and its author (60 %), list an author's books with a join (30 %), insert a book and commit
(10 %). Both engines are created with their dialect's defaults and nothing else.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from . import data, sides
from .runner import Arm, Context, measure_interleaved, result_rows


class Base(DeclarativeBase):
    """Declarative base of the benchmark's own two-table schema."""


class Author(Base):
    """An author with many books."""

    __tablename__ = "author"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    books: Mapped[list[Book]] = relationship(back_populates="author")


class Book(Base):
    """A book, indexed by author."""

    __tablename__ = "book"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    year: Mapped[int] = mapped_column(Integer)
    price: Mapped[float] = mapped_column(Float)
    author: Mapped[Author] = relationship(back_populates="books")


def dataset(data_dir: Path, authors: int, books: int) -> Path:
    """The cached ORM dataset with ``authors`` authors and ``books`` books."""
    return data.cached(data_dir, f"orm_{authors}_{books}", lambda p: _build(p, authors, books))


def _build(path: Path, authors: int, books: int) -> None:
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    rng = random.Random(data.SEED + 1)
    con = sqlite3.connect(path)
    con.execute("pragma journal_mode=wal")
    con.executemany(
        "insert into author (id, name) values (?, ?)",
        ((i, f"Author {i} {data._text(rng)[:20]}") for i in range(1, authors + 1)),
    )
    con.executemany(
        "insert into book (id, author_id, title, year, price) values (?, ?, ?, ?, ?)",
        (
            (i, rng.randint(1, authors), data._text(rng), rng.randint(1900, 2024),
             round(rng.random() * 100, 2))
            for i in range(1, books + 1)
        ),
    )
    con.commit()
    con.close()


def _op_factory(engine: Any, authors: int, books: int) -> Callable[[int], Callable[[], Any]]:
    def make(i: int) -> Callable[[], Any]:
        rng = random.Random(5000 + i)

        def op() -> None:
            r = rng.random()
            with Session(engine) as session:
                if r < 0.6:
                    book = session.get(Book, rng.randint(1, books))
                    if book is None or not book.author.name:
                        raise AssertionError("book or its author missing")
                elif r < 0.9:
                    stmt = (
                        select(Book, Author)
                        .join(Book.author)
                        .where(Author.id == rng.randint(1, authors))
                        .order_by(Book.id)
                        .limit(20)
                    )
                    session.execute(stmt).all()
                else:
                    session.add(Book(
                        author_id=rng.randint(1, authors), title=f"new book {i}",
                        year=2024, price=9.99,
                    ))
                    session.commit()

        return op

    return make


def run(ctx: Context) -> list[dict[str, Any]]:
    """Mixed ORM workload from ``orm_threads`` threads, plain and mp engines interleaved."""
    m = ctx.mode
    src = dataset(ctx.data_dir, m.orm_authors, m.orm_books)
    engines: list[Any] = []
    arms: list[Arm] = []
    try:
        for side, workers in ctx.arm_specs():
            path = data.copy_for(src, ctx.work_dir, f"orm_{side}_{workers}.db")
            engine = create_engine(sides.sqlalchemy_url(side, path, workers))
            engines.append(engine)
            arms.append(Arm(side, workers, _op_factory(engine, m.orm_authors, m.orm_books)))
        samples = measure_interleaved(
            arms, m.orm_threads, m.duration, m.warmup, m.reps, f"orm threads={m.orm_threads}"
        )
        return result_rows(
            "orm", m.orm_threads, arms, samples, unit="ops/s",
            mix="60% get by id + author, 30% join list, 10% insert+commit",
        )
    finally:
        for engine in engines:
            engine.dispose()
        sides.shutdown_mp()
