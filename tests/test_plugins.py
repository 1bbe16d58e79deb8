"""Plug-ins by entry points: a package installed into the venv adds a detector and a scorer, chosen in nightloop.toml.

The package is ``tests/plugin_pkg`` (``nightloop-example-plugin``), a plug-in as a team would ship one. It is
pip-installed into this venv the first time these tests run (no network: the venv's own setuptools builds it).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop.classify import make_detectors
from nightloop.config import load_settings
from nightloop.errors import UnknownName
from nightloop.models import Expectation
from nightloop.plugins import check_config, registered
from nightloop.score import scorer_for
from nightloop.store import Store

PLUGIN = Path(__file__).resolve().parent / "plugin_pkg"


def _installed() -> bool:
    """The plug-in's entry points are registered, and the installed code is this checkout's (not an older copy)."""
    names = {(p.group, p.name) for group in ("detectors", "scorers", "runners") for p in entry_points(group=f"nightloop.{group}")}
    if not {("nightloop.detectors", "shouting"), ("nightloop.scorers", "word_limit"), ("nightloop.runners", "canned")} <= names:
        return False
    spec = importlib.util.find_spec("nightloop_example_plugin")
    source = PLUGIN / "nightloop_example_plugin" / "__init__.py"
    return spec is not None and spec.origin is not None and Path(spec.origin).read_bytes() == source.read_bytes()


@pytest.fixture(scope="module", autouse=True)
def example_plugin() -> None:
    """Install the example plug-in into this venv once (a no-op when it already is)."""
    if _installed():
        return
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", "--no-build-isolation", str(PLUGIN)]
    done = subprocess.run(base, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:  # a venv without setuptools: let pip fetch the build backend from the configured index
        done = subprocess.run([a for a in base if a != "--no-build-isolation"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _installed()


def test_the_registry_lists_built_ins_and_plug_ins() -> None:
    assert {"timeout", "wrong_output", "shouting"} <= set(registered("detectors"))
    assert {"reference", "rubric", "word_limit"} <= set(registered("scorers"))
    assert list(registered("runners"))[:3] == ["recorded", "python", "http"] and "canned" in registered("runners")
    with pytest.raises(UnknownName) as raised:
        make_detectors(["timeout", "vibes"])
    assert "'vibes'" in str(raised.value) and "shouting" in str(raised.value) and "nightloop.detectors" in str(raised.value)


def test_a_plug_in_detector_chosen_in_nightloop_toml_classifies_ingested_conversations(tmp_path: Path) -> None:
    (tmp_path / "nightloop.toml").write_text('[classify]\ndetectors = ["shouting", "tool_error"]\n', encoding="utf-8")
    logs = tmp_path / "logs.jsonl"
    rows = [
        {"id": "loud", "prompt_name": "p", "messages": [{"role": "user", "content": "Where is my order?"},
                                                         {"role": "assistant", "content": "YOUR ORDER HAS SHIPPED TODAY!"}]},
        {"id": "slow", "prompt_name": "p", "outcome": {"status": "timeout"},
         "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there."}]},
    ]
    logs.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    from nightloop.cli import app

    done = CliRunner().invoke(app, ["ingest", str(logs)])
    assert done.exit_code == 0, done.output
    with Store(load_settings().db) as store:
        found = store.conversations.failures(conversation_ids=["loud", "slow"])
    # Only the chosen detectors ran: the plug-in found the shouting, and the timeout detector was not selected.
    assert [(f.conversation_id, f.detector, f.kind) for f in found] == [("loud", "shouting", "format")]


def test_unknown_names_in_nightloop_toml_list_the_registered_ones(tmp_path: Path) -> None:
    (tmp_path / "nightloop.toml").write_text('[classify]\ndetectors = ["shoutin"]\n', encoding="utf-8")
    with pytest.raises(UnknownName, match=r"\[classify\] detectors: unknown detector 'shoutin'; valid detectors: .*shouting"):
        check_config(load_settings())
    (tmp_path / "nightloop.toml").write_text('[replay]\nscorers = ["word_limits"]\n', encoding="utf-8")
    with pytest.raises(UnknownName, match="valid scorers: .*word_limit"):
        check_config(load_settings())
    (tmp_path / "nightloop.toml").write_text('[replay.runner]\nname = "langgraph"\n', encoding="utf-8")
    with pytest.raises(UnknownName, match=r"valid runners: (canned, )?http, python, recorded"):
        check_config(load_settings())


def test_a_plug_in_scorer_chosen_in_nightloop_toml_scores_the_night(tmp_path: Path) -> None:
    from test_runners import run_world_night

    scorer = 'scorers = [{name = "word_limit", max_words = 3, for = ["reference", "pairwise"]}]\n'
    report, results = run_world_night(tmp_path, 'name = "python"\ncallable = "shop_agent:respond"', extra=scorer)
    # Failure cases (reference answers) are scored by the plug-in; regression cases keep the prompt's own
    # declared scorer, which comes first.
    failure_results = [r for r in results if r.case_id.split("@")[0] in report_failed(tmp_path)]
    assert len(failure_results) >= 40
    assert all(r.reason.startswith("word_limit: ") and not r.passed for r in failure_results)  # answers have > 3 words
    assert not any(r.reason.startswith("word_limit: ") for r in results if r not in failure_results)
    assert scorer_for(Expectation(kind="reference"), [{"name": "word_limit", "max_words": 9}]).max_words == 9


def report_failed(tmp_path: Path) -> set[str]:
    with Store(load_settings().db) as store:
        return {f.conversation_id for f in store.conversations.failures()}


async def test_a_plug_in_runner_answers_the_replay() -> None:
    from nightloop.config import RunnerConfig
    from nightloop.models import BASELINE, Message, ReplayCase
    from nightloop.runners import make_runner, run_closing

    runner = make_runner(RunnerConfig(name="canned", options={"answer": "<solution> 12 </solution>"}))
    case = ReplayCase(id="c@1", prompt_name="p", messages=[Message(role="user", content="price?")],
                      expectation=Expectation(kind="reference", value=12), origin="c#wrong_output@1")
    outcome = await run_closing(runner, None, [case], {BASELINE: "sys"}, repeats=1, concurrency=1)
    assert [r.passed for r in outcome.results] == [True]
