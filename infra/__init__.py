"""Local development and test infrastructure: PostgreSQL, Kafka and SFTP without Docker.

Use ``python -m infra up|down|status|env`` or :func:`infra.local.ensure_up`.
"""
