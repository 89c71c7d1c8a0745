"""The metadata store: one SQL core and a thin dialect each for SQLite and PostgreSQL."""
