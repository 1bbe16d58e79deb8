"""`nightloop eval`: a hand edit through the night's validation, replay and gate, with CI exit codes.

One simulated day of traffic on the demo prompt; three hand edits — a real fix, a rewording that changes nothing,
a harmful edit — through the real command line, then the README's CI recipe in a fresh `git clone`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop.cli import app
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.night import Night
from nightloop.prompt_files import import_prompts
from nightloop.simulate import simulate_from_store
from nightloop.stages.classify import stage_classify
from nightloop.stages.ingest import stage_ingest
from nightloop.stages.replay_set import stage_replay_set
from nightloop.store import Store

REPO = Path(__file__).resolve().parents[1]
PROMPT = "support_agent"
DAY = date(2026, 11, 17)
README = (REPO / "README.md").read_text(encoding="utf-8")
BASE = (REPO / "prompts" / f"{PROMPT}.j2").read_text(encoding="utf-8")
#: The simulator's agent follows an instruction it finds in the prompt (by meaning): these six are what it lacks.
FIX = BASE + (
    "- Give every price and amount in euros (€), never in dollars.\n"
    "- Always repeat the order number (e.g. #12345) when you talk about an order.\n"
    "- Refunds above 100 € are not yours to decide: escalate them to a human colleague.\n"
    "- Keep every answer under 80 words.\n"
    "- Call lookup_order at most once per request; answer from its result instead of calling it again.\n"
    "- When the channel is api, answer in JSON (order_number, status, eta) and nothing else.\n"
)
NOOP = BASE.replace(
    "If you do not know something, say so honestly and offer to find out.",
    "When you are unsure about something, admit it honestly and offer to find out.",
)
#: Cuts every answer short: breaks answers that used to pass.
HARM = BASE + "- Keep every answer under 15 words.\n"
EDITS = {"fix": (FIX, 0, "promote"), "noop": (NOOP, 1, "hold"), "harm": (HARM, 2, "reject")}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A store with the demo prompt as production v1 and one simulated day (60 conversations) of its traffic."""
    root = tmp_path_factory.mktemp("eval-world")
    settings = load_settings(db=root / "store.db", seed=3)
    with Store(settings.db) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
        files = simulate_from_store(store, PROMPT, nights=1, per_night=60, seed=11, out=root / "logs", start_date=DAY)
        ingest(store, [str(f) for f in files], classify_config=settings.classify)
    return root / "store.db"


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


NIGHTLOOP = str(Path(sys.executable).with_name("nightloop"))
CI_RECIPE = ["nightloop", "eval", "--changed-since", "origin/main"]


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A project repository: prompts/ and nightloop.toml on main, one pull-request branch per hand edit."""
    repo = tmp_path_factory.mktemp("origin")
    (repo / "prompts").mkdir()
    for suffix in (".j2", ".yaml"):
        shutil.copy(REPO / "prompts" / f"{PROMPT}{suffix}", repo / "prompts")
    (repo / "nightloop.toml").write_text("seed = 3\n", encoding="utf-8")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "prompts")
    for label, (template, _, _) in EDITS.items():
        _git(repo, "checkout", "-q", "-b", f"edit-{label}", "main")
        (repo / "prompts" / f"{PROMPT}.j2").write_text(template, encoding="utf-8")
        _git(repo, "commit", "-q", "-am", f"{label} edit")
    _git(repo, "checkout", "-q", "main")
    return repo


@pytest.fixture(scope="module")
def ci_jobs(pristine: Path, origin: Path, tmp_path_factory) -> dict:
    """The README's CI recipe as a CI job runs it: a fresh clone of each pull request, a copy of the store.

    The three jobs run at the same time (as CI runners would), each a real `nightloop` process replaying its edit.
    """
    root = tmp_path_factory.mktemp("ci")
    assert "git fetch origin main" in README and " ".join(CI_RECIPE) in README
    jobs = {}
    for label in EDITS:
        clone = root / f"clone-{label}"
        _git(root, "clone", "-q", "--branch", f"edit-{label}", str(origin), str(clone))
        _git(clone, "fetch", "-q", "origin", "main")
        store = root / f"{label}.db"
        shutil.copy(pristine, store)
        process = subprocess.Popen(
            [NIGHTLOOP, *CI_RECIPE[1:]], cwd=clone, env={**os.environ, "NIGHTLOOP_DB": str(store)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        jobs[label] = (process, clone, store)
    finished = {}
    try:
        for label, (process, clone, store) in jobs.items():
            out, err = process.communicate(timeout=300)
            finished[label] = {"code": process.returncode, "out": out, "err": err, "clone": clone, "db": store}
    finally:
        for process, _, _ in jobs.values():
            if process.poll() is None:
                process.kill()
    return finished


@pytest.mark.parametrize("label", list(EDITS))
def test_a_hand_edit_exits_with_the_gate_verdict_and_its_evidence(ci_jobs, label: str) -> None:
    _, code, verdict = EDITS[label]
    job = ci_jobs[label]
    assert job["code"] == code, job["out"] + job["err"]
    # The screen is `review show`'s evidence: the diff, the gate table, the reasons, then the verdict and exit code.
    text = " ".join(job["out"].split())
    assert "prompts/support_agent.j2 against v1" in text
    assert "diff" in text and "gate" in text and "evidence" in text
    assert f"{PROMPT}: {verdict}" in text and f"(exit {code})" in text
    if label == "fix":
        assert "+- Give every price and amount in euros" in job["out"]

    # The same evaluation as JSON (the stored one: same edit, store, replay set and config).
    clone = job["clone"]
    as_json = CliRunner().invoke(app, [
        "eval", PROMPT, "--template", str(clone / "prompts" / f"{PROMPT}.j2"),
        "--db", str(job["db"]), "--config", str(clone / "nightloop.toml"), "--json",
    ])
    assert as_json.exit_code == code, as_json.output
    report = json.loads(as_json.stdout)
    decision = report["decision"]
    assert report["verdict"] == verdict and decision["verdict"] == verdict and report["exit_code"] == code
    assert decision["n_cases"] >= 10 and report["gated_cases"] == decision["n_cases"], decision["reasons"]
    assert report["baseline_version"] == 1
    assert decision["reasons"][-1].split(":")[0] == verdict and decision["reasons"][-1][:40] in text
    if verdict == "promote":
        assert decision["delta"] >= 0.05 and decision["p_adjusted"] < 0.05
    elif verdict == "hold":
        assert abs(decision["delta"]) < 0.05
    else:
        assert decision["regressions"], "the harmful edit breaks cases the baseline passed; they are listed"


def test_a_pull_request_that_changes_no_prompt_has_nothing_to_evaluate(ci_jobs, origin: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone-main"
    _git(tmp_path, "clone", "-q", str(origin), str(clone))
    job = subprocess.run(
        [NIGHTLOOP, *CI_RECIPE[1:]], cwd=clone, env={**os.environ, "NIGHTLOOP_DB": str(ci_jobs["fix"]["db"])},
        capture_output=True, text=True, timeout=120,
    )
    assert job.returncode == 0 and "nothing to evaluate" in job.stdout, job.stdout + job.stderr


def test_evaluations_are_not_nights(ci_jobs) -> None:
    with Store(ci_jobs["fix"]["db"]) as store:
        assert store.runs.reports() == []
        assert store.runs.review_items(None) == []
        assert store.prompts.label_version(PROMPT, "production") == 1 and len(store.prompts.versions(PROMPT)) == 1


def test_validation_refuses_before_any_replay(pristine: Path, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    shutil.copy(pristine, db)
    broken = tmp_path / "broken.j2"
    broken.write_text(BASE + "Mention {{ coupon_code }} to every customer.\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", PROMPT, "--template", str(broken), "--db", str(db), "--json"])
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)
    assert any("coupon_code" in r for r in report["decision"]["reasons"])
    with Store(db) as store:
        assert store.runs.eval_results(report["run_id"]) == []  # refused: never replayed

    same = tmp_path / "same.j2"
    same.write_text(BASE, encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", PROMPT, "--template", str(same), "--db", str(db)])
    assert result.exit_code == 1 and "identical to support_agent v1" in " ".join(result.output.split())


def test_a_person_may_add_template_logic_the_judge_may_not() -> None:
    from nightloop.config import JudgeConfig
    from nightloop.judge import validate_candidate
    from nightloop.models import Candidate

    logic = BASE + "{% if channel == 'api' %}- Answer in JSON only.{% endif %}\n"
    candidate = Candidate(id="c", prompt_name=PROMPT, base_version=1, template=logic)
    judge = validate_candidate(candidate, base_template=BASE, conversation_texts=[], config=JudgeConfig())
    human = validate_candidate(candidate, base_template=BASE, conversation_texts=[], config=JudgeConfig(), human=True)
    assert any("Jinja2 logic" in r for r in judge) and human == []


def test_queue_sends_a_gate_passed_edit_to_review_and_approval_moves_production(ci_jobs, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    shutil.copy(ci_jobs["fix"]["db"], db)  # where the fix was evaluated: the same evaluation is reused
    (tmp_path / "nightloop.toml").write_text("seed = 3\n", encoding="utf-8")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / f"{PROMPT}.j2").write_text(FIX, encoding="utf-8")
    runner = CliRunner()
    imported = runner.invoke(app, ["prompts", "import", str(tmp_path / "prompts"), "--db", str(db), "--by", "alice"])
    assert imported.exit_code == 0, imported.output
    said = " ".join(imported.output.split())
    assert "created v2" in said and "production is still v1" in said
    assert f"nightloop eval {PROMPT} --version 2" in said

    queued = runner.invoke(app, ["eval", PROMPT, "--version", "2", "--queue", "--db", str(db), "--json"])
    assert queued.exit_code == 0, queued.output
    review_id = json.loads(queued.stdout)["review_id"]
    assert review_id
    shown = runner.invoke(app, ["review", "show", review_id, "--db", str(db)])
    assert "hand edit by alice" in shown.output and "Approve:" in shown.output

    approved = runner.invoke(app, ["review", "approve", review_id, "--db", str(db), "--reviewer", "bob", "--json"])
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.stdout)["production"] == 2  # the imported version itself, not a copy
    with Store(db) as store:
        assert store.prompts.label_version(PROMPT, "production") == 2 and len(store.prompts.versions(PROMPT)) == 2


def test_a_held_edit_is_not_queued(ci_jobs, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    shutil.copy(ci_jobs["noop"]["db"], db)
    (tmp_path / "nightloop.toml").write_text("seed = 3\n", encoding="utf-8")
    path = tmp_path / "noop.j2"
    path.write_text(NOOP, encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", PROMPT, "--template", str(path), "--queue", "--db", str(db), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["review_id"] is None and any("not queued" in n for n in report["notes"])
    with Store(db) as store:
        assert store.runs.review_items(None) == []


def test_eval_uses_the_latest_nights_replay_set(pristine: Path, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    shutil.copy(pristine, db)
    settings = load_settings(db=db, seed=3)
    night_date = DAY + timedelta(days=1)
    with Store(db) as store:  # the night's first stages, as the pipeline runs them (no model calls)
        night = Night(settings, store, PROMPT, night_date)
        store.runs.start(night.run_id, PROMPT, night_date.isoformat(), settings.config_hash())
        ingested = stage_ingest(night)
        replay_set = stage_replay_set(night, ingested, stage_classify(night, ingested))
    path = tmp_path / "same.j2"
    path.write_text(BASE, encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", PROMPT, "--template", str(path), "--db", str(db), "--json"])
    report = json.loads(result.stdout)
    assert report["replay_set"] == f"built by the night of {night_date}" and report["cases"] == len(replay_set.cases)
    unknown = CliRunner().invoke(app, ["eval", "nope", "--template", str(path), "--db", str(db)])
    assert unknown.exit_code == 3 and "nightloop prompts import" in " ".join(unknown.output.split())
