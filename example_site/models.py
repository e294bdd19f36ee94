"""ORM models of the example bookshop: authors write books, readers review them, books carry tags.

Prices are integer cents and dates are plain integers/timestamps so every query stays portable
between SQLite (stock or mpsqlite) and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of every example_site table."""


book_tag = Table(
    "book_tag",
    Base.metadata,
    Column("book_id", ForeignKey("book.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_book_tag_tag", "tag_id"),
)


class Author(Base):
    """A writer; one author has many books."""

    __tablename__ = "author"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), index=True)
    country: Mapped[str] = mapped_column(String(60), default="")
    born: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bio: Mapped[str] = mapped_column(Text, default="")

    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.year")


class Book(Base):
    """A title in the catalogue, written by one author."""

    __tablename__ = "book"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"), index=True)
    year: Mapped[int] = mapped_column(Integer, index=True)
    genre: Mapped[str] = mapped_column(String(40), index=True)
    price_cents: Mapped[int] = mapped_column(Integer)
    pages: Mapped[int] = mapped_column(Integer)
    isbn: Mapped[str] = mapped_column(String(20), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")

    author: Mapped[Author] = relationship(back_populates="books")
    reviews: Mapped[list[Review]] = relationship(
        back_populates="book", order_by="Review.created_at.desc()", cascade="all, delete-orphan"
    )
    tags: Mapped[list[Tag]] = relationship(secondary=book_tag, order_by="Tag.name")


class Review(Base):
    """One reader's rating (1-5) and text about a book."""

    __tablename__ = "review"
    # covering index: per-book counts and averages never touch the table rows
    __table_args__ = (Index("ix_review_book_rating", "book_id", "rating"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("book.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(80))
    rating: Mapped[int] = mapped_column(Integer, index=True)
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)

    book: Mapped[Book] = relationship(back_populates="reviews")


class Tag(Base):
    """A free-form label such as "award-winner" attached to many books."""

    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)


GENRES: tuple[str, ...] = (
    "Fantasy",
    "Science Fiction",
    "Mystery",
    "Thriller",
    "Romance",
    "Historical",
    "Biography",
    "Poetry",
    "Travel",
    "Cooking",
    "Philosophy",
    "Children",
)
"""The fixed list of genres offered by the forms and used by the seeder."""
