"""The author's side of the store: version list, rollback that walks back (and `--to`), diff and review as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop.cli import app
from nightloop.errors import NightloopError, NotFound
from nightloop.store import Store


@pytest.fixture
def cli(tmp_path: Path):
    db = tmp_path / "store.db"

    def run(*args: str, expect: int = 0):
        result = CliRunner().invoke(app, [*args, "--db", str(db)])
        assert result.exit_code == expect, result.output
        return result

    run.db = db
    return run


@pytest.fixture
def three_versions(cli, tmp_path: Path):
    """support v1 (imported by carl), v2 (dana), v3 (erin); production moved v1 → v2 → v3."""
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for n, who in ((1, "carl"), (2, "dana"), (3, "erin")):
        (prompts / "support.j2").write_text(f"You help {{{{ shop }}}}. Rule {n}.\n", encoding="utf-8")
        cli("prompts", "import", str(prompts), "--by", who)
        if n > 1:
            cli("prompts", "label", "support", str(n), "production", "--by", who)
    return cli


def test_versions_lists_number_date_author_message_and_labels(three_versions) -> None:
    rows = json.loads(three_versions("prompts", "versions", "support", "--json").stdout)
    assert [(r["version"], r["created_by"], r["parent"]) for r in rows] == [(1, "carl", None), (2, "dana", 1), (3, "erin", 2)]
    assert rows[2]["labels"] == ["production"] and rows[0]["labels"] == []
    assert all(r["message"].startswith("imported from") and r["created_at"] for r in rows)
    table = three_versions("prompts", "versions", "support").output
    assert "erin" in table and "production" in table and "v3" in table
    assert "No prompt named 'nope'" in three_versions("prompts", "versions", "nope", expect=1).output


def test_plain_rollback_walks_back_through_production_history_instead_of_toggling(three_versions) -> None:
    assert "rolled back v3 → v2" in three_versions("prompts", "rollback", "support").output
    assert "rolled back v2 → v1" in three_versions("prompts", "rollback", "support").output
    assert "no earlier version" in three_versions("prompts", "rollback", "support", expect=1).output
    with Store(three_versions.db) as store:
        assert store.prompts.label_version("support", "production") == 1


def test_rollback_after_a_new_promotion_returns_to_what_production_ran_before_it(three_versions) -> None:
    three_versions("prompts", "rollback", "support")  # v3 → v2
    three_versions("prompts", "label", "support", "3", "production")  # v3 again (say, fixed and re-approved)
    assert "rolled back v3 → v2" in three_versions("prompts", "rollback", "support").output
    assert "rolled back v2 → v1" in three_versions("prompts", "rollback", "support").output


def test_rollback_to_a_named_version(three_versions) -> None:
    assert "rolled back v3 → v1" in three_versions("prompts", "rollback", "support", "--to", "1", "--reason", "x").output
    with Store(three_versions.db) as store:
        last = store.prompts.label_history("support", "production")[-1]
        assert (last.from_version, last.to_version, last.reason) == (3, 1, "x")
    out = " ".join(three_versions("prompts", "rollback", "support", "--to", "1", expect=1).output.split())
    assert "already points at v1" in out
    assert "has no version 9" in three_versions("prompts", "rollback", "support", "--to", "9", expect=1).output


def test_rollback_to_a_version_that_never_ran_in_production_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        repo = store.prompts
        for text in ("a", "b", "c"):
            repo.create_version("p", text, created_by="x")
        repo.set_label("p", "production", 1, "x")
        repo.set_label("p", "production", 2, "x")
        with pytest.raises(NightloopError, match="nightloop eval p --version 3 --queue"):
            repo.rollback("p", moved_by="x", to_version=3)
        with pytest.raises(NotFound, match="never moved from another version"):
            repo.rollback("p", label="staging", moved_by="x")
        assert repo.label_version("p", "production") == 2


def test_import_of_a_changed_template_says_what_production_is_and_how_to_evaluate(cli, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "support.j2").write_text("Hello {{ shop }}.\n", encoding="utf-8")
    first = " ".join(cli("prompts", "import", str(prompts)).output.split())
    assert "production → v1" in first
    (prompts / "support.j2").write_text("Hello {{ shop }}. Be brief.\n", encoding="utf-8")
    second = " ".join(cli("prompts", "import", str(prompts)).output.split())
    assert "created v2" in second and "production is still v1" in second
    assert "nightloop eval support --version 2" in second


def test_diff_as_json(three_versions) -> None:
    out = json.loads(three_versions("prompts", "diff", "support/1", "support@production", "--json").stdout)
    assert out["old"]["version"] == 1 and out["new"]["version"] == 3
    assert (out["added"], out["removed"]) == (1, 1)
    assert "-You help {{ shop }}. Rule 1.\n+You help {{ shop }}. Rule 3.\n" in out["diff"]
