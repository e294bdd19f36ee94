"""Tests of the core mpsqlite DB-API module (package so module names cannot clash)."""
