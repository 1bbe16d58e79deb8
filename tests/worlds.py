"""Worlds the whole-night tests start from: built once per session, copied into each test's own folder.

A world is a store file (the repo's prompts plus a simulated day of traffic), optionally with one night already
run on it. Each is built the first time a test asks for it, by the code under test, and every test gets its own
copy, so tests stay independent and a broken stage still fails the tests that rely on its output.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.models import NightReport
from nightloop.prompt_files import import_prompts
from nightloop.simulate import simulate_from_store
from nightloop.store import Store

REPO = Path(__file__).resolve().parents[1]
PROMPT = "support_agent"
DAY = date(2026, 11, 17)


@dataclass(frozen=True)
class Traffic:
    """One simulated day of ``PROMPT``'s traffic on a fresh store of the repo's prompts."""

    per_night: int = 100
    seed: int = 11
    day: date = DAY


#: The managed prompts and 40 simulated conversations of ``DAY``: the store most CLI-process tests run a night on.
FORTY = Traffic(per_night=40, seed=5)


@dataclass(frozen=True)
class NightRun:
    """``Traffic``, then the night after it run with ``load_settings(seed=...)`` and the simulator."""

    traffic: Traffic = Traffic()
    seed: int = 3

    @property
    def logical_date(self) -> date:
        return self.traffic.day + timedelta(days=1)


@contextmanager
def _default_settings_in(folder: Path) -> Iterator[None]:
    """Whatever test asks first, a world is built with the default settings: no config file, no NIGHTLOOP_* env."""
    with pytest.MonkeyPatch.context() as patch:
        for var in [v for v in os.environ if v.startswith(("NIGHTLOOP_", "OPENAI_", "ANTHROPIC_"))]:
            patch.delenv(var)
        patch.setenv("NIGHTLOOP_PROMPT_CACHE", str(folder / "prompt-cache"))
        patch.chdir(folder)
        yield


def build_traffic(traffic: Traffic, folder: Path, db_name: str = "nightloop.db") -> Path:
    """Build the world in ``folder`` (its logs in ``folder/logs``) and return the store file."""
    db = folder / db_name
    with _default_settings_in(folder), Store(db) as store:
        settings = load_settings(db=db)
        import_prompts(store, REPO / "prompts", created_by="test")
        files = simulate_from_store(store, PROMPT, nights=1, per_night=traffic.per_night, seed=traffic.seed,
                                    out=folder / "logs", start_date=traffic.day)
        ingest(store, [str(f) for f in files], classify_config=settings.classify)
    return db


class Worlds:
    """Session cache of built worlds under ``root``; ``copy_*`` puts a private copy in a test's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stores: dict[Traffic | NightRun, Path] = {}
        self._reports: dict[NightRun, NightReport] = {}
        self._built = 0

    def copy_traffic(self, traffic: Traffic, folder: Path, db_name: str = "nightloop.db") -> Path:
        """A copy of the store after ``traffic`` at ``folder/db_name``, with the day's logs in ``folder/logs``."""
        if traffic not in self._stores:
            self._stores[traffic] = build_traffic(traffic, self._folder(traffic))
        return self._copy(self._stores[traffic], folder, db_name)

    def copy_night(self, run: NightRun, folder: Path, db_name: str = "nightloop.db") -> tuple[Path, NightReport]:
        """A copy of the store after ``run``'s night, and that night's report."""
        if run not in self._stores:
            built = self._folder(run)
            db = self.copy_traffic(run.traffic, built)
            with _default_settings_in(built), Store(db) as store:
                report = pipeline.run_night(load_settings(db=db, seed=run.seed), PROMPT, run.logical_date, store=store)
            self._stores[run], self._reports[run] = db, report
        return self._copy(self._stores[run], folder, db_name), self._reports[run].model_copy(deep=True)

    def _folder(self, key: Traffic | NightRun) -> Path:
        self._built += 1
        folder = self.root / f"world-{self._built}-{type(key).__name__}"
        folder.mkdir()
        return folder

    @staticmethod
    def _copy(db: Path, folder: Path, db_name: str) -> Path:
        assert not db.with_name(db.name + "-wal").exists(), "a world store must be closed (checkpointed) before it is copied"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / db_name
        shutil.copyfile(db, target)
        logs = db.parent / "logs"
        if logs.is_dir():
            shutil.copytree(logs, folder / "logs", dirs_exist_ok=True)
        return target
