"""SQL functions the dialect registers in every mpsqlite worker.

They live apart from the dialect, and the package imports the dialect only
when it is asked for, so that a worker unpickling them by reference imports
``re`` and not SQLAlchemy: that import alone would double each worker's
memory and add a third of a second to the first statement of an engine.
"""

from __future__ import annotations

import re


def regexp(pattern: str, value: str | None) -> bool | None:
    """SQL ``regexp(pattern, value)``, behind SQLite's ``value REGEXP pattern``."""
    if value is None:
        return None
    return re.search(pattern, value) is not None
