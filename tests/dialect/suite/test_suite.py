"""SQLAlchemy's third-party dialect compliance suite, run against the configured URL."""

from sqlalchemy.testing.suite import *  # noqa: F403
