"""Launchers for the local PostgreSQL, Kafka and sshd processes (one module each)."""
