"""What a statement does, from its SQL text alone: the caller's routing decision.

Each distinct SQL string is classified once and memoised, so the hot path
pays one dictionary lookup. The rules are conservative: a statement is a
read only when it plainly is one; anything unknown may write.
"""

from __future__ import annotations

import re
from enum import IntEnum


class Kind(IntEnum):
    EMPTY = 0  # blanks and comments only: runs nowhere, needs nothing
    READ = 1  # SELECT, VALUES, EXPLAIN, pragma queries
    WRITE = 2  # may change the database: needs the writer gate
    BEGIN = 3  # BEGIN IMMEDIATE / EXCLUSIVE: takes SQLite's write lock at once
    DEFERRED = 11  # BEGIN [DEFERRED], or SAVEPOINT: a transaction that may only read
    JOURNAL_MODE = 10  # PRAGMA journal_mode = X: may leave WAL
    COMMIT = 4  # COMMIT / END
    ROLLBACK = 5  # ROLLBACK (not ROLLBACK TO)
    SYNC_QUERY = 6  # PRAGMA synchronous: group commit answers it
    SYNC_SET = 7  # PRAGMA synchronous = N: group commit keeps the level
    PRAGMA_SET = 8  # another connection-scoped pragma assignment (replayed on workers)
    ATTACH = 9  # ATTACH / DETACH (replayed on workers)
    TEMP = 12  # CREATE TEMP ..., or CREATE/DROP of a temp.name: changes the TEMP schema only


_SKIP = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.S)
_WORD = re.compile(r"[A-Za-z_]+")
_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]")
_WRITE_WORDS = re.compile(r"\b(?:insert|update|delete|replace)\b", re.I)
_PRAGMA = re.compile(r"pragma\s+(?:([A-Za-z_]\w*)\s*\.\s*)?([A-Za-z_]\w*)\s*(=|\()?", re.I)
_BEGIN_WRITE = re.compile(r"begin\s+(?:immediate|exclusive)\b", re.I)
_ROLLBACK_TO = re.compile(r"rollback\s*(?:transaction\s*)?to\b", re.I)
_SYNC_VALUE = re.compile(r"[=(]\s*['\"]?([\w-]+)")
_NAME = r"(?:\"(?:[^\"]|\"\")*\"|\[[^\]]*\]|`[^`]*`|[A-Za-z_][\w$]*)"
# ATTACH ... AS name / DETACH name, alone in the statement (a trailing ';' and blanks aside).
_ATTACH = re.compile(rf"attach\s+(?:database\s+)?.+\s+as\s+({_NAME})\s*;?\s*$", re.I | re.S)
_DETACH = re.compile(rf"detach\s+(?:database\s+)?({_NAME})\s*;?\s*$", re.I | re.S)
_TEMP_DDL = re.compile(
    r"create\s+(?:temp|temporary)\s|(?:create|drop)\s+(?:unique\s+)?(?:table|view|index|trigger)"
    r"\s+(?:if\s+(?:not\s+)?exists\s+)?temp\s*\.", re.I)
_DML_TARGET = re.compile(
    rf"(?:(?:insert|replace)\s+(?:or\s+\w+\s+)?into|update\s+(?:or\s+\w+\s+)?|delete\s+from)"
    rf"\s*(?:({_NAME})\s*\.\s*)?({_NAME})", re.I)

# Pragmas that set something of one connection rather than of the file.
CONNECTION_PRAGMAS = frozenset(
    """
    analysis_limit automatic_index busy_timeout cache_size cache_spill case_sensitive_like
    cell_size_check checkpoint_fullfsync defer_foreign_keys foreign_keys fullfsync
    hard_heap_limit ignore_check_constraints journal_size_limit legacy_alter_table mmap_size
    query_only read_uncommitted recursive_triggers reverse_unordered_selects secure_delete
    soft_heap_limit temp_store threads trusted_schema wal_autocheckpoint
    """.split()
)
#: PRAGMAs without an argument that write the file: each is a write transaction.
_WRITING_QUERIES = frozenset({"optimize", "wal_checkpoint", "incremental_vacuum"})
# Pragmas called with an argument that only read.
_READING_CALLS = frozenset(
    """
    table_info table_xinfo index_info index_xinfo index_list foreign_key_list
    integrity_check quick_check foreign_key_check function_list module_list pragma_list
    collation_list database_list compile_options table_list
    """.split()
)

SYNC_LEVELS = {"0": 0, "off": 0, "1": 1, "normal": 1, "2": 2, "full": 2, "3": 3, "extra": 3}

_memo: dict[str, Kind] = {}
_MEMO_LIMIT = 4096


def first_word(sql: str) -> str:
    """The first keyword of ``sql`` in upper case, skipping blanks and comments."""
    m = _WORD.match(sql, _SKIP.match(sql).end())  # type: ignore[union-attr]
    return m.group(0).upper() if m else ""


def kind(sql: str) -> Kind:
    """The :class:`Kind` of the first statement in ``sql``, memoised."""
    k = _memo.get(sql)
    if k is None:
        k = _classify(sql)
        if len(_memo) >= _MEMO_LIMIT:
            _memo.clear()
        _memo[sql] = k
    return k


def _classify(sql: str) -> Kind:
    start = _SKIP.match(sql).end()  # type: ignore[union-attr]
    m = _WORD.match(sql, start)
    if m is None:
        return Kind.EMPTY if start == len(sql) or sql[start:].strip(" ;\t\r\n") == "" else (
            Kind.WRITE)
    word = m.group(0).upper()
    if word in ("SELECT", "VALUES", "EXPLAIN"):
        return Kind.READ
    if word == "WITH":
        return Kind.WRITE if _WRITE_WORDS.search(_STRINGS.sub("''", sql)) else Kind.READ
    if word == "BEGIN":
        return Kind.BEGIN if _BEGIN_WRITE.match(sql, start) else Kind.DEFERRED
    if word == "SAVEPOINT":
        return Kind.DEFERRED
    if word in ("COMMIT", "END"):
        return Kind.COMMIT
    if word == "ROLLBACK":
        return Kind.WRITE if _ROLLBACK_TO.match(sql, start) else Kind.ROLLBACK
    if word in ("ATTACH", "DETACH"):
        return Kind.ATTACH
    if (word == "CREATE" or word == "DROP") and _TEMP_DDL.match(sql, start):
        return Kind.TEMP
    if word == "PRAGMA":
        p = _PRAGMA.match(sql, start)
        if p is None:
            return Kind.WRITE
        schema, name, op = (p.group(1) or "main").lower(), p.group(2).lower(), p.group(3)
        if name == "synchronous":
            if schema == "main":
                return Kind.SYNC_QUERY if op is None else Kind.SYNC_SET
            return Kind.READ if op is None else Kind.PRAGMA_SET
        if name == "journal_mode" and op is not None:
            return Kind.JOURNAL_MODE
        if op is None:
            return Kind.WRITE if name in _WRITING_QUERIES else Kind.READ
        if name in CONNECTION_PRAGMAS:
            return Kind.PRAGMA_SET
        if op == "(" and name in _READING_CALLS:
            return Kind.READ
        return Kind.WRITE
    return Kind.WRITE


_targets: dict[str, tuple[str, str] | None] = {}


def _unquote(name: str) -> str:
    if name[0] in "\"`[":
        name = name[1:-1].replace('""', '"') if name[0] == '"' else name[1:-1]
    return name.lower()


def dml_target(sql: str) -> tuple[str, str] | None:
    """``(schema, table)`` (lower case, schema '' if unqualified) that a plain INSERT,
    REPLACE, UPDATE or DELETE writes; None for any other statement. Memoised."""
    if sql in _targets:
        return _targets[sql]
    m = _DML_TARGET.match(sql, _SKIP.match(sql).end())  # type: ignore[union-attr]
    target = (_unquote(m.group(1)) if m.group(1) else "", _unquote(m.group(2))) if m else None
    if len(_targets) >= _MEMO_LIMIT:
        _targets.clear()
    _targets[sql] = target
    return target


def pragma_key(sql: str) -> tuple[str, str]:
    """``(schema, name)`` (lower case, schema '' if unqualified) a PRAGMA statement names;
    ``("", "")`` if none."""
    p = _PRAGMA.match(sql, _SKIP.match(sql).end())  # type: ignore[union-attr]
    return ((p.group(1) or "").lower(), p.group(2).lower()) if p else ("", "")


def attachment(sql: str) -> tuple[bool, str] | None:
    """``(True, schema)`` for ``ATTACH ... AS schema``, ``(False, schema)`` for ``DETACH
    schema`` (lower case, unquoted); None where the statement is not read as either."""
    start = _SKIP.match(sql).end()  # type: ignore[union-attr]
    m = _ATTACH.match(sql, start)
    if m is not None:
        return True, _unquote(m.group(1))
    m = _DETACH.match(sql, start)
    return (False, _unquote(m.group(1))) if m is not None else None


def sync_level(sql: str) -> int | None:
    """The level a ``PRAGMA synchronous = X`` statement sets, or None if unreadable."""
    m = _SYNC_VALUE.search(sql)
    return SYNC_LEVELS.get(m.group(1).lower()) if m else None


#: Functions SQLite also calls through an operator: ``x REGEXP y`` is ``regexp(y, x)``.
_OPERATOR_FUNCTIONS = frozenset({"regexp", "like", "glob", "match"})


def mentions(sql: str, names: frozenset[str]) -> bool:
    """Whether ``sql`` calls any of the (lower-case) function ``names``, as ``name(`` or as
    the operator of the same name."""
    lowered = sql.lower()
    return any(name in lowered for name in names) and any(
        re.search(r"\b" + re.escape(name) + (r"\b" if name in _OPERATOR_FUNCTIONS else r"\s*\("),
                  lowered) for name in names
    )
