"""A row that behaves like sqlite3.Row: by index, by name (any case), keys()."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class Row:
    """sqlite3.Row for mpsqlite cursors (sqlite3.Row only accepts sqlite3 cursors)."""

    __slots__ = ("_values", "_description")

    def __init__(self, cursor: Any, values: tuple) -> None:
        if not isinstance(values, tuple):
            raise TypeError("Row() argument 2 must be tuple")
        self._values = values
        self._description = cursor.description

    def keys(self) -> list[str]:
        return [d[0] for d in self._description or ()]

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            folded = key.casefold()
            for i, d in enumerate(self._description or ()):
                if d[0].casefold() == folded:
                    return self._values[i]
            raise IndexError("No item with that key")
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self._description == other._description and self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(self.keys())) ^ hash(self._values)

    def __repr__(self) -> str:
        return f"<mpsqlite.Row object at {id(self):#x}>"
