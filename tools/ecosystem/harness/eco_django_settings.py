"""Django test settings: tests/test_sqlite.py's, with FILE test databases.

Django's runner gives SQLite test databases an in-memory name unless
TEST["NAME"] is set; both aliases get a file under ``ECO_DJANGO_DBDIR`` so
that the file-database path of the driver is what runs (stock and mpsqlite
runs alike).  The driver itself is chosen by eco_launch.py's sqlite3 alias,
not here: ENGINE stays Django's own ``django.db.backends.sqlite3``.
"""

import os

_DBDIR = os.environ.get("ECO_DJANGO_DBDIR") or os.path.join(os.getcwd(), "eco-django-db")
os.makedirs(_DBDIR, exist_ok=True)

DATABASES = {
    alias: {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(_DBDIR, f"{alias}.sqlite3"),
        "TEST": {"NAME": os.path.join(_DBDIR, f"test_{alias}.sqlite3")},
    }
    for alias in ("default", "other")
}

SECRET_KEY = "django_tests_secret_key"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
]

DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

USE_TZ = False
