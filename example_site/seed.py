"""Deterministic seeding of the bookshop: the same scale always yields the same rows.

The benchmark relies on this: with a fixed :data:`SEED`, book ``n`` has the same title, author and
reviews on every machine, so the URLs of :data:`example_site.LOAD_MIX` hit the same data.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator

from sqlalchemy import Engine, func, inspect, select

from .db import create_fts
from .models import GENRES, Author, Base, Book, Review, Tag, book_tag

SEED = 20240611
"""Fixed random seed of the generated data set."""

DEFAULT_BOOKS = 20_000
"""Default ``--seed-rows``: number of books; authors, reviews and tags scale with it."""

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)`` called after every inserted batch."""

_BATCH = 2_000

FIRST_NAMES = (
    "Ada Alan Amara Anton Beatrix Boris Camille Chen Clara Dario Elif Emil Farah Felix Greta "
    "Hana Hugo Ines Ivan Jonas Kaito Lena Luca Maya Mei Nadia Nils Omar Olga Pablo Priya Quentin "
    "Rosa Rafael Sanna Sofia Tariq Tomas Uma Vera Viktor Wanda Xavier Yara Yusuf Zoe Zeno"
).split()
LAST_NAMES = (
    "Abbott Almeida Bauer Becker Castillo Chowdhury Dubois Eriksen Fischer Fontaine Garcia "
    "Haddad Hartmann Ibrahim Jansen Kowalski Larsen Lindqvist Moreau Nakamura Novak Okafor "
    "Olsen Petrov Quinn Rossi Sato Schmidt Silva Svensson Takahashi Tanaka Ueda Varga Weber "
    "Wojcik Yamamoto Zhang Ziegler Murphy Kelly Brennan Ortega Rahman Mendes"
).split()
COUNTRIES = (
    "Argentina Brazil Canada Denmark Egypt France Germany India Ireland Italy Japan Kenya "
    "Mexico Nigeria Norway Poland Portugal Spain Sweden Turkey"
).split()
ADJECTIVES = (
    "Silent Burning Hidden Last Crimson Forgotten Golden Broken Distant Secret Wandering "
    "Northern Hollow Bright Quiet Endless Frozen Winter Summer Electric Paper Iron Glass "
    "Midnight Velvet Wild Lost Ancient Little Salt"
).split()
NOUNS = (
    "River Garden Empire Lighthouse Orchard Machine Kingdom Harbor Library Mountain City "
    "Archive Island Compass Cartographer Alchemist Detective Orchestra Bridge Lantern Forest "
    "Voyage Clockmaker Observatory Circus Atlas Mirror Comet Station Valley"
).split()
TOPICS = (
    "memory family war love exile science magic friendship betrayal music grief hope power "
    "trade revolution childhood ocean desert winter machines language faith cooking travel"
).split()
TAGS = (
    "award-winner bestseller classic debut series standalone translated illustrated short "
    "epic cozy dark funny literary slow-burn twisty hopeful tearjerker page-turner "
    "book-club young-adult non-fiction memoir essay graphic-novel audiobook banned-book "
    "cult-classic first-edition signed staff-pick new-release local-author prize-shortlist "
    "dystopia utopia space-opera whodunit heist road-trip"
).split()
_REVIEW_OPENERS = (
    "Couldn't put it down.", "A slow start, but worth it.", "Not for me.",
    "Beautifully written.", "The ending surprised me.", "Too long by half.",
    "My book club loved it.", "A new favourite.", "Uneven but ambitious.",
    "Read it in one sitting.", "The characters felt real.", "Overhyped.",
)


def counts_for(books: int) -> dict[str, int]:
    """Row counts generated for ``books`` books (the ``--seed-rows`` scale)."""
    books = max(10, int(books))
    return {
        "tags": len(TAGS),
        "authors": max(5, books // 8),
        "books": books,
        "book_tags": books * 2,
        "reviews": books * 3,
    }


def _batches(rows: Iterator[dict], size: int = _BATCH) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _authors(rng: random.Random, n: int) -> Iterator[dict]:
    for i in range(1, n + 1):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        country = rng.choice(COUNTRIES)
        topics = rng.sample(TOPICS, 2)
        yield {
            "id": i, "name": name, "country": country, "born": rng.randint(1900, 2000),
            "bio": f"{name} is a writer from {country} known for books about "
                   f"{topics[0]} and {topics[1]}.",
        }


def book_title(rng: random.Random) -> str:
    """A generated title such as "The Hidden Lighthouse"; used by the seeder and the load mix."""
    pattern = rng.randrange(3)
    if pattern == 0:
        return f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    if pattern == 1:
        return f"{rng.choice(NOUNS)} of {rng.choice(TOPICS).title()}"
    noun = rng.choice(NOUNS)
    article = "An" if noun[0] in "AEIOU" else "A"
    return f"{article} {noun} in {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"


def _books(rng: random.Random, n: int, n_authors: int) -> Iterator[dict]:
    for i in range(1, n + 1):
        topics = rng.sample(TOPICS, 3)
        yield {
            "id": i,
            "title": book_title(rng),
            "author_id": rng.randint(1, n_authors),
            "year": rng.randint(1920, 2024),
            "genre": rng.choice(GENRES),
            "price_cents": rng.randint(499, 4999),
            "pages": rng.randint(80, 900),
            "isbn": f"978-{i:010d}",
            "description": f"A story of {topics[0]}, {topics[1]} and {topics[2]}. "
                           f"Set near a {rng.choice(ADJECTIVES).lower()} "
                           f"{rng.choice(NOUNS).lower()}.",
        }


def _book_tags(rng: random.Random, n_books: int, n_tags: int) -> Iterator[dict]:
    for book_id in range(1, n_books + 1):
        for tag_id in rng.sample(range(1, n_tags + 1), 2):
            yield {"book_id": book_id, "tag_id": tag_id}


def _reviews(rng: random.Random, n: int, n_books: int) -> Iterator[dict]:
    start = dt.datetime(2015, 1, 1)
    for i in range(1, n + 1):
        rating = min(5, max(1, round(rng.gauss(3.6, 1.1))))
        yield {
            "id": i,
            "book_id": rng.randint(1, n_books),
            "reviewer": f"{rng.choice(FIRST_NAMES).lower()}{rng.randint(1, 999)}",
            "rating": rating,
            "body": f"{rng.choice(_REVIEW_OPENERS)} A book about {rng.choice(TOPICS)}.",
            "created_at": start + dt.timedelta(minutes=rng.randrange(5_000_000)),
        }


def is_seeded(engine: Engine) -> bool:
    """True when the schema exists and holds at least one book."""
    if not inspect(engine).has_table("book"):
        return False
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Book)).scalar_one() > 0


def seed(engine: Engine, books: int = DEFAULT_BOOKS, progress: ProgressFn | None = None) -> dict:
    """Create the schema and insert the deterministic data set; return the row counts."""
    counts = counts_for(books)
    rng = random.Random(SEED)
    Base.metadata.create_all(engine)
    stages = (
        ("tags", Tag.__table__, iter({"id": i + 1, "name": t} for i, t in enumerate(TAGS))),
        ("authors", Author.__table__, _authors(rng, counts["authors"])),
        ("books", Book.__table__, _books(rng, counts["books"], counts["authors"])),
        ("book_tags", book_tag, _book_tags(rng, counts["books"], counts["tags"])),
        ("reviews", Review.__table__, _reviews(rng, counts["reviews"], counts["books"])),
    )
    for stage, table, rows in stages:
        done = 0
        if progress:
            progress(stage, 0, counts[stage])
        for batch in _batches(rows):
            with engine.begin() as conn:
                conn.execute(table.insert(), batch)
            done += len(batch)
            if progress:
                progress(stage, done, counts[stage])
    if progress:
        progress("search index", 0, 1)
    create_fts(engine)
    if progress:
        progress("search index", 1, 1)
    if engine.dialect.name == "postgresql":
        _reset_pg_sequences(engine)
    return counts


def _reset_pg_sequences(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in ("author", "book", "review", "tag"):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
            )


def ensure_seeded(
    engine: Engine, books: int = DEFAULT_BOOKS, progress: ProgressFn | None = None
) -> bool:
    """Seed the database unless it already holds books; return True when it seeded."""
    if is_seeded(engine):
        Base.metadata.create_all(engine)
        return False
    seed(engine, books, progress)
    return True
