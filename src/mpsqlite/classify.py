"""Decides, from the SQL text alone, where a statement may run.

Reads outside a transaction may run on any worker; everything that may write
needs the pool's single writer slot; some pragmas configure the connection
and must reach every worker. The rules are conservative: a statement is a
read only when it plainly is one.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache


class Kind(Enum):
    READ = "read"  # SELECT, VALUES, EXPLAIN, pragma queries: any worker
    WRITE = "write"  # may change the database: needs the writer slot
    BEGIN = "begin"  # BEGIN / SAVEPOINT: opens a transaction
    END = "end"  # COMMIT / END / ROLLBACK (not ROLLBACK TO)
    CONFIG = "config"  # connection-scoped pragma or ATTACH: replayed on every worker
    SYNC_QUERY = "sync"  # PRAGMA synchronous (read): group commit answers it


# Pragmas whose setting belongs to one connection rather than the database file.
CONNECTION_PRAGMAS = frozenset(
    """
    analysis_limit automatic_index busy_timeout cache_size cache_spill case_sensitive_like
    cell_size_check checkpoint_fullfsync defer_foreign_keys foreign_keys fullfsync
    hard_heap_limit ignore_check_constraints journal_size_limit legacy_alter_table mmap_size
    query_only read_uncommitted recursive_triggers reverse_unordered_selects secure_delete
    soft_heap_limit synchronous temp_store threads trusted_schema wal_autocheckpoint
    """.split()
)

_COMMENT_OR_SPACE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.S)
_WORD = re.compile(r"[A-Za-z_]+")
_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]")
_WRITE_WORDS = re.compile(r"\b(?:insert|update|delete|replace)\b", re.I)
_PRAGMA = re.compile(
    r"pragma\s+(?:[A-Za-z_][\w]*\s*\.\s*)?([A-Za-z_]\w*)\s*(=|\()?", re.I
)


def first_word(sql: str) -> str:
    """The first keyword of ``sql`` in upper case, skipping blanks and comments."""
    pos = _COMMENT_OR_SPACE.match(sql).end()  # type: ignore[union-attr]
    m = _WORD.match(sql, pos)
    return m.group(0).upper() if m else ""


@lru_cache(maxsize=1024)
def is_dml(sql: str) -> bool:
    """Whether sqlite3's legacy transaction control opens a transaction first.

    Mirrors CPython: only leading whitespace is skipped (not comments), then
    the statement must start with INSERT, UPDATE, DELETE or REPLACE.
    """
    head = sql.lstrip(" \t\r\n")[:7].upper()
    return head.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE"))


_TEMP_DDL = re.compile(r"\s*create\s+temp(?:orary)?\s", re.I)


def creates_temp(sql: str) -> bool:
    """Whether ``sql`` creates a TEMP object, which lives in one connection only."""
    return _TEMP_DDL.match(sql, _COMMENT_OR_SPACE.match(sql).end()) is not None  # type: ignore[union-attr]


def pragma_assignment(sql: str) -> tuple[str, str] | None:
    """``(name, value)`` of a ``PRAGMA name = value`` statement, else None."""
    m = re.match(
        r"\s*pragma\s+(?:[A-Za-z_]\w*\s*\.\s*)?([A-Za-z_]\w*)\s*(?:=\s*|\(\s*)['\"]?([\w-]+)",
        sql, re.I,
    )
    return (m.group(1).lower(), m.group(2).lower()) if m else None


_ATTACH_AS = re.compile(r"\bas\s+([\w\"'`\[\]]+)\s*;?\s*$", re.I)
_DETACH = re.compile(r"detach\s+(?:database\s+)?([\w\"'`\[\]]+)\s*;?\s*$", re.I)


def attached_schema(sql: str) -> str | None:
    """The schema name an ATTACH or DETACH statement names, lower case, else None."""
    word = first_word(sql)
    if word == "ATTACH":
        m = _ATTACH_AS.search(sql)
    elif word == "DETACH":
        m = _DETACH.match(sql, _COMMENT_OR_SPACE.match(sql).end())  # type: ignore[union-attr]
    else:
        return None
    return m.group(1).strip("\"'`[]").lower() if m else None


@lru_cache(maxsize=1024)
def classify(sql: str) -> Kind:
    """Return the :class:`Kind` of the first statement in ``sql``."""
    word = first_word(sql)
    if word in ("SELECT", "VALUES", "EXPLAIN"):
        return Kind.READ
    if word == "WITH":
        body = _STRINGS.sub("''", sql)
        return Kind.WRITE if _WRITE_WORDS.search(body) else Kind.READ
    if word in ("BEGIN", "SAVEPOINT"):
        return Kind.BEGIN
    if word in ("COMMIT", "END"):
        return Kind.END
    if word == "ROLLBACK":
        rest = sql[sql.upper().find("ROLLBACK") + 8 :]
        if re.match(r"\s*(?:transaction\s*)?to\b", rest, re.I):
            return Kind.WRITE
        return Kind.END
    if word == "PRAGMA":
        m = _PRAGMA.search(sql)
        if m is None or m.group(2) is None:
            if m is not None and m.group(1).lower() == "synchronous":
                return Kind.SYNC_QUERY
            return Kind.READ
        name = m.group(1).lower()
        if name in CONNECTION_PRAGMAS and m.group(2) == "=":
            return Kind.CONFIG
        if m.group(2) == "(" and name in CONNECTION_PRAGMAS:
            return Kind.CONFIG
        if m.group(2) == "(":
            return Kind.READ if name not in _WRITING_CALL_PRAGMAS else Kind.WRITE
        return Kind.WRITE
    if word in ("ATTACH", "DETACH"):
        return Kind.CONFIG
    return Kind.WRITE


# Pragmas that take an argument in parentheses and write to the database.
_WRITING_CALL_PRAGMAS = frozenset(
    {"wal_checkpoint", "incremental_vacuum", "optimize", "journal_mode", "user_version",
     "application_id", "auto_vacuum", "page_size", "max_page_count", "locking_mode",
     "schema_version", "writable_schema", "encoding"}
)
