"""Process settings read from environment variables (the README lists them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know about where things are.

    The master key itself is not kept here: ``adapters.crypto`` reads it
    where it is used, so it is never part of a settings repr.
    """

    database_url: str | None
    kafka_bootstrap_servers: str | None
    log_level: str = "WARNING"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            log_level=(env.get("ORDERFLOW_LOG_LEVEL") or "WARNING").upper(),
        )

    def require_database_url(self) -> str:
        """Return the database URL or raise a clear ``SettingsError``."""
        if not self.database_url:
            raise SettingsError(
                "DATABASE_URL is not set (e.g. postgresql+psycopg2://user@host:5432/orderflow; "
                "`make infra-up` prints one)"
            )
        return self.database_url
