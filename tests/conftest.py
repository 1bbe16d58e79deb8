"""Shared fixtures: every test gets its own store, config and Prefect home; no network, no real keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from worlds import Worlds

SHARED_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def pytest_configure(config: pytest.Config) -> None:
    """Temporary folders on tmpfs where there is one (unless ``--basetemp`` says otherwise).

    The store commits every model call durably: on a disk, fsync is most of a whole-night test's wall time.
    Nothing in the suite tests durability across a power cut, so the files may as well live in memory.
    """
    shm = Path("/dev/shm")
    if config.option.basetemp is None and "PYTEST_DEBUG_TEMPROOT" not in os.environ and _roomy(shm):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(shm)


def _roomy(folder: Path, free_bytes: int = 2 << 30) -> bool:
    """A writable folder with room for the suite's files (a container's 64 MB /dev/shm is not)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return os.access(folder, os.W_OK) and stats.f_bavail * stats.f_frsize >= free_bytes


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


@pytest.fixture(scope="session")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worlds]:
    """Stores (a simulated day of traffic, optionally one night run on it) built once and copied per test (tests/worlds.py)."""
    from worlds import Worlds  # beside this file; imports the pipeline, so only for the tests that ask

    yield Worlds(tmp_path_factory.mktemp("worlds"))


@pytest.fixture
def sim_world(worlds: Worlds, tmp_path: Path):
    """(settings, open store): a private copy of the repo's prompts and a simulated day of traffic, seed 3."""
    from nightloop.config import load_settings
    from nightloop.store import Store
    from worlds import Traffic

    settings = load_settings(db=tmp_path / "night.db", seed=3)
    worlds.copy_traffic(Traffic(), tmp_path, settings.db.name)
    with Store(settings.db) as store:
        yield settings, store


@pytest.fixture
def real_data() -> Path:
    """The planners' shared real conversations; skips cleanly where ../shared is absent (a user's machine)."""
    if not SHARED_REAL.is_dir():
        pytest.skip("../shared/data/real is not present (only in the project's CI and dev sessions)")
    return SHARED_REAL


from trace_gen import PARENTLESS_MODES, TRACE_MODES  # noqa: E402 - beside this file


def _trace_libraries_key(script: Path) -> str:
    """What the generated traces depend on: the generator and the installed instrumentation/SDK versions."""
    import hashlib
    from importlib import metadata

    names = sorted(d.metadata["Name"] + d.version for d in metadata.distributions() if d.metadata["Name"] and d.metadata["Name"].lower().startswith(("opentelemetry", "openinference", "openai")))
    return hashlib.sha256((script.read_text() + "|".join(names)).encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def real_traces(request: pytest.FixtureRequest) -> dict[tuple[str, str], Path]:
    """Trace files written by the real instrumentation libraries around the official openai client (tests/trace_gen.py).

    One subprocess per library and mode (the instrumentors patch openai globally), all at once, bounded in time.
    They are regenerated whenever the generator or an installed library version changes (pytest's cache
    keeps the last set, so a warm run does not pay for six interpreter start-ups).
    """
    return _generate_traces(request, "real_traces", TRACE_MODES, {})


@pytest.fixture(scope="session")
def parentless_traces(request: pytest.FixtureRequest) -> dict[tuple[str, str], Path]:
    """The same scenarios by the real libraries, with no app span: no parent span and no conversation id on any call."""
    return _generate_traces(request, "parentless_traces", PARENTLESS_MODES, {"NIGHTLOOP_TEST_NO_APP_SPAN": "1"})


def _generate_traces(request: pytest.FixtureRequest, name: str, modes: list[tuple[str, str]], extra_env: dict[str, str]) -> dict[tuple[str, str], Path]:
    import shutil
    import subprocess
    import sys

    script = Path(__file__).with_name("trace_gen.py")
    root = request.config.cache.mkdir(name) / _trace_libraries_key(script)
    folders = {mode: root / "_".join(mode) for mode in modes}
    if (root / "complete").exists():
        return folders
    shutil.rmtree(root, ignore_errors=True)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("OTEL_", "TRACELOOP_", "OPENAI_", "NIGHTLOOP_TEST_"))}
    env.update(extra_env)
    jobs = {mode: subprocess.Popen([sys.executable, str(script), *mode, str(folder)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for mode, folder in folders.items()}
    try:
        for mode, job in jobs.items():
            output, _ = job.communicate(timeout=180)
            assert job.returncode == 0, f"{mode}: {output.decode(errors='replace')[-2000:]}"
    finally:
        for job in jobs.values():
            if job.poll() is None:
                job.kill()
    (root / "complete").touch()
    return folders
