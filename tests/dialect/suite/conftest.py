"""Loads SQLAlchemy's test plugin for the dialect compliance suite in this folder.

The plugin takes over collection and configuration for the whole pytest
session, so this folder is only collected by the subprocess that
``tests/dialect/test_compliance_suite.py`` starts (``MPSQLITE_SQLA_SUITE=1``,
see ``tests/dialect/conftest.py``).  Database URL: ``--dburi`` or ``[db]`` in
setup.cfg; requirements: ``sqlalchemy_mpsqlite.requirements.Requirements``.
"""

import pytest
from sqlalchemy.dialects import registry

# the entry point in pyproject.toml does the same for an installed package;
# registering here also covers running from a source tree without installing
registry.register("sqlite.mpsqlite", "sqlalchemy_mpsqlite", "MPSQLiteDialect")

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F403,I001
