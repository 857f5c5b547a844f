"""Run this project's Python entry points as real processes, output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(
    argv: list[str], env: Mapping[str, str], *, key: str | None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """``python ARGV`` from the project root with ``env`` over the current environment.

    Every ``ENCRYPTION_*`` variable is removed, then ``ENCRYPTION_MASTER_KEY`` is
    set to ``key`` unless it is None.
    """
    full = {k: v for k, v in os.environ.items() if not k.startswith("ENCRYPTION_")}
    full.update(env)
    if key is not None:
        full["ENCRYPTION_MASTER_KEY"] = key
    return subprocess.run(
        [sys.executable, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=full,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
