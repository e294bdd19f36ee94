"""The ORM on sqlite+mpsqlite: models, relationships, bulk inserts, types, reflection."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import sys

import pytest
from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")


class Book(Base):
    __tablename__ = "book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    author: Mapped[Author] = relationship(back_populates="books")
    meta: Mapped[dict | None] = mapped_column(JSON)
    published: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cover: Mapped[bytes | None] = mapped_column(LargeBinary)
    price: Mapped[decimal.Decimal | None] = mapped_column(Numeric(10, 2))


@pytest.fixture
def orm_engine(engine):
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for a in range(3):
            author = Author(name=f"author{a}")
            author.books = [Book(title=f"book{a}.{b}") for b in range(4)]
            session.add(author)
        session.commit()
    return engine


def test_create_all_and_reflection(orm_engine) -> None:
    insp = inspect(orm_engine)
    assert set(insp.get_table_names()) == {"author", "book"}
    fks = insp.get_foreign_keys("book")
    assert [(fk["referred_table"], fk["constrained_columns"]) for fk in fks] == [
        ("author", ["author_id"])
    ]
    assert [u["column_names"] for u in insp.get_unique_constraints("author")] == [["name"]]
    reflected = MetaData()
    book = Table("book", reflected, autoload_with=orm_engine)
    assert set(book.c.keys()) == {
        "id", "title", "author_id", "meta", "published", "cover", "price"
    }
    assert isinstance(book.c.cover.type, LargeBinary)


def test_lazy_loading(orm_engine) -> None:
    with Session(orm_engine) as session:
        author = session.scalars(select(Author).where(Author.name == "author1")).one()
        assert "books" not in author.__dict__
        assert [b.title for b in author.books] == [f"book1.{b}" for b in range(4)]
        assert author.books[0].author is author


@pytest.mark.parametrize("loader", [selectinload, joinedload])
def test_eager_loading(orm_engine, loader) -> None:
    with Session(orm_engine) as session:
        authors = session.scalars(
            select(Author).options(loader(Author.books)).order_by(Author.id)
        ).unique().all()
        assert all("books" in a.__dict__ for a in authors)
        assert [len(a.books) for a in authors] == [4, 4, 4]


def test_bulk_insert_with_returning_uses_insertmanyvalues(orm_engine) -> None:
    statements: list[str] = []

    @event.listens_for(orm_engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    rows = [{"title": f"bulk{i}", "author_id": 1} for i in range(500)]
    with Session(orm_engine) as session:
        books = session.scalars(insert(Book).returning(Book), rows).all()
        assert [b.title for b in books] == [r["title"] for r in rows]
        assert len({b.id for b in books}) == 500
        session.commit()
    inserts = [s for s in statements if s.startswith("INSERT INTO book")]
    assert inserts and all("RETURNING" in s for s in inserts)
    assert len(inserts) < 50  # batched: many rows per INSERT ... VALUES (...), (...)
    with orm_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Book).where(Book.author_id == 1)) == 504


def test_unit_of_work_flush_assigns_primary_keys(orm_engine) -> None:
    with Session(orm_engine) as session:
        books = [Book(title=f"uow{i}", author_id=2) for i in range(50)]
        session.add_all(books)
        session.flush()
        ids = [b.id for b in books]
        session.commit()
    assert len(set(ids)) == 50 and None not in ids


def test_json_datetime_binary_numeric_round_trip(orm_engine) -> None:
    when = dt.datetime(2024, 2, 29, 13, 45, 6, 123456)
    cover = bytes(range(256)) * 4
    meta = {"tags": ["a", "b"], "pages": 321, "nested": {"ok": True, "none": None}}
    with Session(orm_engine) as session:
        book = Book(
            title="typed", author_id=1, meta=meta, published=when, cover=cover,
            price=decimal.Decimal("12.34"),
        )
        session.add(book)
        session.commit()
        book_id = book.id
    with Session(orm_engine) as session:
        book = session.get(Book, book_id)
        assert book.meta == meta
        assert book.published == when
        assert book.cover == cover and isinstance(book.cover, bytes)
        assert book.price == decimal.Decimal("12.34")
        found = session.scalars(select(Book.id).where(Book.meta["pages"].as_integer() == 321))
        assert found.all() == [book_id]


def test_large_binary_memoryview_parameter(orm_engine) -> None:
    """The stock dialect binds LargeBinary as memoryview, which must reach the worker."""
    payload = b"\x00\xffbinary\x00" * 1000
    with orm_engine.begin() as conn:
        conn.execute(
            Book.__table__.insert(),
            {"title": "mv", "author_id": 1, "cover": memoryview(payload)},
        )
        assert conn.scalar(select(Book.cover).where(Book.title == "mv")) == payload


def test_regexp_and_floor(orm_engine) -> None:
    with orm_engine.connect() as conn:
        titles = conn.scalars(
            select(Book.title).where(Book.title.regexp_match(r"^book2\.[13]$")).order_by(Book.id)
        ).all()
        assert titles == ["book2.1", "book2.3"]
        assert conn.scalar(text("select floor(7.9)")) == 7


def test_workers_register_the_dialect_functions_without_importing_sqlalchemy(
    orm_engine, pool_of
) -> None:
    # SQLAlchemy in every worker would double its memory and slow the first statement.
    # A read that calls regexp() and returns many rows is run twice: the first run (in
    # this process) proves it heavy, the second runs on a worker process, which has
    # replayed the connection's create_function calls, the dialect's among them.
    heavy = (
        "with recursive r(i) as (select 1 union all select i + 1 from r where i < 4000) "
        "select i, sqlalchemy_loaded(), process_id() from r "
        "where ('n' || i) regexp '[02468]$' order by i"
    )
    raw = orm_engine.raw_connection()
    try:
        con = raw.driver_connection
        con.create_function("sqlalchemy_loaded", 0, lambda: "sqlalchemy" in sys.modules)
        con.create_function("process_id", 0, os.getpid)
        here = con.execute(heavy).fetchall()
        assert here[:2] == [(2, 1, os.getpid()), (4, 1, os.getpid())]
        offloaded = pool_of()["offloaded_statements"]
        there = con.execute(heavy).fetchall()
        assert pool_of()["offloaded_statements"] == offloaded + 1
        assert [i for i, _, _ in there] == list(range(2, 4001, 2))  # regexp ran there
        pids = {pid for _, _, pid in there}
        assert len(pids) == 1 and os.getpid() not in pids
        assert pids <= {w["pid"] for w in pool_of()["workers"]}
        assert {loaded for _, loaded, _ in there} == {0}
    finally:
        raw.close()


def test_orm_rolls_back_on_integrity_error(orm_engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with Session(orm_engine) as session:
        session.add(Author(name="author0"))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Author)) == 3
