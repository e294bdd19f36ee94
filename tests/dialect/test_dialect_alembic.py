"""Alembic migrations up and down on a real file through sqlite+mpsqlite."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

ENV_PY = """
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
"""

REVISIONS = {
    "0001_account.py": '''
        """create account"""
        import sqlalchemy as sa
        from alembic import op

        revision = "0001"
        down_revision = None

        def upgrade():
            op.create_table(
                "account",
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("name", sa.String(50), nullable=False),
            )
            op.create_index("ix_account_name", "account", ["name"], unique=True)

        def downgrade():
            op.drop_index("ix_account_name", table_name="account")
            op.drop_table("account")
    ''',
    "0002_email.py": '''
        """add account.email"""
        import sqlalchemy as sa
        from alembic import op

        revision = "0002"
        down_revision = "0001"

        def upgrade():
            with op.batch_alter_table("account") as batch:
                batch.add_column(sa.Column("email", sa.String(100)))
            op.execute("UPDATE account SET email = name || '@example.org'")

        def downgrade():
            with op.batch_alter_table("account") as batch:
                batch.drop_column("email")
    ''',
}


@pytest.fixture
def alembic_config(tmp_path: Path) -> Config:
    scripts = tmp_path / "migrations"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text(ENV_PY)
    for name, body in REVISIONS.items():
        (scripts / "versions" / name).write_text(textwrap.dedent(body))
    config = Config()
    config.set_main_option("script_location", str(scripts))
    return config


def _migrate(engine, config: Config, action, target: str) -> None:
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        action(config, target)


def _columns(engine, table: str) -> list[str]:
    return [c["name"] for c in inspect(engine).get_columns(table)]


def test_upgrade_and_downgrade(engine, alembic_config: Config, db_path: Path) -> None:
    _migrate(engine, alembic_config, command.upgrade, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO account (name) VALUES ('ann'), ('bob')")
    _migrate(engine, alembic_config, command.upgrade, "head")
    assert _columns(engine, "account") == ["id", "name", "email"]
    assert [ix["name"] for ix in inspect(engine).get_indexes("account")] == ["ix_account_name"]

    plain = sqlite3.connect(str(db_path))  # the file itself, read without mpsqlite
    try:
        assert plain.execute("select version_num from alembic_version").fetchall() == [("0002",)]
        assert plain.execute("select email from account order by id").fetchall() == [
            ("ann@example.org",),
            ("bob@example.org",),
        ]
    finally:
        plain.close()

    _migrate(engine, alembic_config, command.downgrade, "0001")
    assert _columns(engine, "account") == ["id", "name"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select name from account order by id").all() == [
            ("ann",),
            ("bob",),
        ]
        assert conn.exec_driver_sql("select version_num from alembic_version").all() == [
            ("0001",)
        ]

    _migrate(engine, alembic_config, command.downgrade, "base")
    assert not inspect(engine).has_table("account")
