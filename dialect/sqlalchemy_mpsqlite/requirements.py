"""Requirements for SQLAlchemy's dialect compliance suite, run against SQLite backends.

Used by ``tests/dialect/suite`` (``[sqla_testing] requirement_cls`` in setup.cfg)
for ``sqlite+mpsqlite`` and, to measure the baseline, for stock ``sqlite://``.
Each entry says what SQLite can do; where a feature depends on the driver or
the URL, the predicate looks at the configured engine.  Every closed entry
carries its reason, which the suite prints as the skip message.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements


def _supported() -> property:
    return property(lambda self: exclusions.open(), doc="SQLite supports this.")  # type: ignore[no-untyped-call]


def _unsupported(reason: str) -> property:
    """A closed requirement whose skip message says why."""
    return property(
        lambda self: exclusions.skip_if(exclusions.BooleanPredicate(True, reason)),  # type: ignore[no-untyped-call]
        doc=reason,
    )


def _only_if(predicate: Any, reason: str) -> property:
    return property(lambda self: exclusions.only_if(predicate, reason), doc=reason)  # type: ignore[no-untyped-call]


def _since(*version: int) -> property:
    """Supported from this SQLite version on."""
    reason = f"needs SQLite {'.'.join(map(str, version))} or later"

    def check(config: Any) -> bool:
        recent: bool = config.db.dialect.server_version_info >= version
        return recent

    return _only_if(check, reason)


def _file_database(config: Any) -> bool:
    """True when the test database is a file (``:memory:`` has one connection per thread)."""
    is_file: bool = config.db.dialect._is_url_file_db(config.db.url)
    return is_file


def _explicit_begin(config: Any) -> bool:
    """True when the dialect emits BEGIN itself (mpsqlite's default; not stock pysqlite)."""
    return getattr(config.db.dialect, "begin_mode", "driver") != "driver"


_NO_FETCH = "SQLite has LIMIT/OFFSET only, no FETCH FIRST"
_NO_COMMENTS = "SQLite has no table or column comments"
_NO_UNION_PARENS = "SQLite rejects a parenthesized SELECT as a UNION member"


class Requirements(SuiteRequirements):
    """What the SQLite backend supports, for ``sqlalchemy.testing.suite``."""

    # DDL
    create_table_as = create_temp_table_as = _supported()
    table_ddl_if_exists = index_ddl_if_exists = _supported()
    server_defaults = expression_server_defaults = _supported()
    views = unicode_ddl = indexes_with_expressions = nvarchar_types = _supported()
    uuid_data_type = _supported()
    computed_columns = computed_columns_stored = computed_columns_virtual = _since(3, 31)
    temporary_tables = temporary_views = _supported()
    identity_columns = _unsupported(
        "SQLite has no IDENTITY columns (INTEGER PRIMARY KEY is the rowid)"
    )
    schema_create_delete = _unsupported("SQLite schemas are attached files, not CREATE SCHEMA")
    materialized_views = _unsupported("SQLite has no materialized views")
    create_or_replace_view = _unsupported("SQLite has no CREATE OR REPLACE VIEW")

    # reflection
    reflect_table_options = reflects_pk_names = _supported()
    foreign_key_constraint_name_reflection = _supported()
    foreign_key_constraint_option_reflection_ondelete = _supported()
    foreign_key_constraint_option_reflection_onupdate = _supported()
    fk_constraint_option_reflection_ondelete_restrict = _supported()
    fk_constraint_option_reflection_ondelete_noaction = _supported()
    fk_constraint_option_reflection_onupdate_restrict = _supported()
    check_constraint_reflection = inline_check_constraint_reflection = _supported()
    computed_columns_reflect_persisted = _since(3, 31)
    indexes_check_column_order = repeated_column_foreign_keys = _supported()
    temp_table_names = has_temp_table = temp_table_reflection = _supported()
    implicitly_named_constraints = _unsupported("SQLite does not name unnamed constraints")
    comment_reflection = comment_reflection_full_unicode = _unsupported(_NO_COMMENTS)
    temp_table_comment_reflection = _unsupported(_NO_COMMENTS)
    column_collation_reflection = _unsupported("the SQLite dialect reflects no collations")
    reflect_indexes_with_expressions = _unsupported(
        "the SQLite dialect leaves expression-based indexes out of reflection"
    )
    cross_schema_fk_reflection = _unsupported("SQLite FKs cannot reference another database")
    index_reflects_included_columns = _unsupported("SQLite has no covering (INCLUDE) indexes")
    repeated_remote_col_foreign_keys = _unsupported(
        "the SQLite dialect cannot reflect a foreign key naming one remote column twice"
    )

    # SQL
    boolean_col_expressions = intersect = except_ = _supported()
    ctes = ctes_with_update_delete = ctes_with_values = _supported()
    order_by_label_with_expression = _supported()
    regexp_match = _supported()  # through the regexp() function registered on connect
    supports_bitwise_or = supports_bitwise_and = _supported()
    supports_bitwise_not = supports_bitwise_shift = _supported()
    nullsordering = _since(3, 30)
    window_functions = _since(3, 25)
    window_range = window_range_numeric = _since(3, 28)
    tuple_in = tuple_in_w_empty = _since(3, 15)
    update_from = _since(3, 33)
    window_range_non_numeric = _unsupported("SQLite RANGE offsets must be numeric; dates are text")
    parens_in_union_contained_select_w_limit_offset = _unsupported(_NO_UNION_PARENS)
    parens_in_union_contained_select_wo_limit_offset = _unsupported(_NO_UNION_PARENS)
    supports_bitwise_xor = _unsupported("SQLite has no XOR operator")
    delete_from = _unsupported("SQLite has no multi-table DELETE (DELETE ... USING)")
    regexp_replace = _unsupported("SQLite has no regexp_replace() function")
    fetch_first = fetch_expression = fetch_no_order_by = _unsupported(_NO_FETCH)
    fetch_offset_with_options = fetch_ties = fetch_percent = _unsupported(_NO_FETCH)

    # types
    json_type = legacy_unconditional_json_extract = _supported()
    timestamp_microseconds = datetime_historic = date_historic = _supported()
    datetime_literals = infinity_floats = literal_float_coercion = _supported()
    precision_numerics_retains_significant_digits = _supported()
    # every SQLite floating point column is an 8-byte REAL, whatever precision is declared
    float_or_double_precision_behaves_generically = _supported()
    precision_numerics_many_significant_digits = _unsupported(
        "SQLite stores NUMERIC values as 8-byte REAL: about 15 significant digits"
    )
    dbapi_lastrowid = _supported()

    # transactions and connections
    autocommit = isolation_level = skip_autocommit_rollback = _supported()
    savepoints = _only_if(_explicit_begin, "the driver's implicit BEGIN breaks SAVEPOINT")
    independent_connections = _only_if(_file_database, "needs a file database")
    independent_readonly_connections = _only_if(_file_database, "needs a file database")

    def get_isolation_levels(self, config: Any) -> dict[str, Any]:
        with config.db.connect() as conn:
            supported = conn.dialect.get_isolation_level_values(conn.connection.dbapi_connection)
        return {"default": "SERIALIZABLE", "supported": list(supported)}

    def get_order_by_collation(self, config: Any) -> str:
        return "BINARY"
