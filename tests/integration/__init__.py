"""Integration tests: they talk to real PostgreSQL, Kafka and SFTP (see tests/conftest.py)."""
