"""Helpers the tests share: real server processes (Redis, PostgreSQL) and receivers."""
