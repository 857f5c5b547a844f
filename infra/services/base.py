"""What every local service launcher reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceStatus:
    """One line of ``python -m infra status``."""

    name: str
    running: bool
    pid: int | None
    port: int | None
    detail: str = ""

    def line(self) -> str:
        """Render as a human-readable status line."""
        state = "running" if self.running else "stopped"
        pid = f" pid={self.pid}" if self.pid else ""
        port = f" port={self.port}" if self.port else ""
        detail = f"  {self.detail}" if self.detail else ""
        return f"{self.name:<9} {state}{pid}{port}{detail}"
