"""The example third-party connector package (examples/orderflow-example-erp).

pip-installs it (offline: no dependencies, no build isolation) into a scratch directory
put on ``sys.path`` — the running interpreter's site-packages stay untouched — then
finds it the way OrderFlow does, through its ``orderflow.connectors`` entry point, and
runs the package's own test module, which is the conformance kit in a few lines.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from adapters.connectors.registry import ENTRY_POINT_GROUP, ConnectorRegistry

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "orderflow-example-erp"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory holding the installed example package (with its dist-info)."""
    base = tmp_path_factory.mktemp("example-erp")
    source = base / "src"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = base / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.split(".")[0] == "orderflow_example_erp"]:
            del sys.modules[name]
        importlib.invalidate_caches()


def test_the_registry_finds_the_example_connector_through_its_entry_point(
    example_site: Path,
) -> None:
    (entry_point,) = [
        ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "EXAMPLE_FILE_ERP"
    ]
    assert entry_point.dist is not None
    assert entry_point.dist.name == "orderflow-example-erp"
    with ConnectorRegistry.isolated():
        assert "EXAMPLE_FILE_ERP" in ConnectorRegistry.discover()
        connector = ConnectorRegistry.get("EXAMPLE_FILE_ERP")
    assert type(connector).__module__ == "orderflow_example_erp.connector"
    assert Path(sys.modules["orderflow_example_erp"].__file__ or "").is_relative_to(example_site)


def test_the_packages_own_conformance_tests_pass(example_site: Path) -> None:
    source = example_site.parent / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(example_site), str(REPO)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary
    assert "skipped" not in summary
    assert "failed" not in summary
