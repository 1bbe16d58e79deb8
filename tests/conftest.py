"""Shared fixtures: every test gets its own store, config and Prefect home; no network, no real keys."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the store, config, Prefect and provider env at a temp dir; strip real keys."""
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "NIGHTLOOP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    for var in [v for v in __import__("os").environ if v.startswith("NIGHTLOOP_")]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NIGHTLOOP_DB", str(tmp_path / "nightloop.db"))
    monkeypatch.setenv("NIGHTLOOP_PROMPT_CACHE", str(tmp_path / "prompt-cache"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def real_data() -> Path:
    """The planners' shared real conversations; skips cleanly where ../shared is absent (a user's machine)."""
    if not SHARED_REAL.is_dir():
        pytest.skip("../shared/data/real is not present (only in the project's CI and dev sessions)")
    return SHARED_REAL
