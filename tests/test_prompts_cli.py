"""`nightloop prompts …` through the real command line parser (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from nightloop.cli import prompts as prompts_cli
from nightloop.store import Store

TEMPLATE = "You help customers of {{ shop }}.\nBe brief.\n"


def _app() -> typer.Typer:
    """The real app; a local one carrying only these commands if another area's module does not import yet."""
    try:
        from nightloop.cli import app
    except Exception:
        app = typer.Typer()
        prompts_cli.register(app)
    return app


@pytest.fixture
def run(tmp_path: Path):
    runner, app, db = CliRunner(), _app(), tmp_path / "cli.db"

    def invoke(*args: str, expect: int = 0):
        result = runner.invoke(app, ["prompts", *args, "--db", str(db)])
        assert result.exit_code == expect, result.output
        return result

    invoke.db = db
    return invoke


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "prompts"
    directory.mkdir()
    (directory / "support.j2").write_text(TEMPLATE, encoding="utf-8")
    (directory / "support.yaml").write_text(
        "description: Support\nvariables: [shop]\nautonomy: propose\n", encoding="utf-8"
    )
    return directory


def test_import_list_and_show(run, prompts_dir: Path) -> None:
    assert "support: created v1" in run("import", str(prompts_dir)).output
    assert "Nothing new" in run("import", str(prompts_dir)).output

    [row] = json.loads(run("list", "--json").stdout)
    assert row == {"name": "support", "production": 1, "latest": 1, "labels": {"production": 1}, "autonomy": "propose"}
    assert "support" in run("list").output

    shown = json.loads(run("show", "support", "--json").stdout)
    assert (shown["version"], shown["template"], shown["labels"]) == (1, TEMPLATE, ["production"])
    assert shown["meta"]["autonomy"] == "propose"
    human = run("show", "support/1").output
    assert "Be brief." in human and "autonomy propose" in human and "variables: shop" in human


def test_import_defaults_to_the_configured_prompts_dir(run, prompts_dir: Path, isolated_env: Path) -> None:
    assert prompts_dir == isolated_env / "prompts"  # the test runs in tmp_path, where ./prompts is the default
    assert "support: created v1" in run("import").output


def test_label_diff_history_and_rollback(run, prompts_dir: Path) -> None:
    run("import", str(prompts_dir), "--by", "carl")
    (prompts_dir / "support.j2").write_text(
        TEMPLATE.replace("Be brief.", "Be brief. Quote prices in EUR."), encoding="utf-8"
    )
    assert "support: created v2 (parent v1)" in run("import", str(prompts_dir), "--by", "dana").output

    diff = run("diff", "support", "support@latest").output
    assert "-Be brief.\n" in diff and "+Be brief. Quote prices in EUR.\n" in diff and "+1 -1 lines" in diff

    assert "v1 → v2" in run("label", "support", "2", "production", "--by", "erin", "--reason", "reviewed").output
    moves = json.loads(run("history", "support", "--json").stdout)
    assert [(m["from_version"], m["to_version"], m["moved_by"]) for m in moves] == [(None, 1, "carl"), (1, 2, "erin")]
    assert "reviewed" in run("history", "support").output

    assert "rolled back v2 → v1" in run("rollback", "support", "--reason", "broke checkout").output
    with Store(run.db) as store:
        assert store.prompts.label_version("support", "production") == 1
        assert store.prompts.label_history("support")[-1].reason == "broke checkout"


def test_export_writes_the_mirror(run, prompts_dir: Path, tmp_path: Path) -> None:
    run("import", str(prompts_dir))
    assert "support: wrote v1" in run("export", str(tmp_path / "out")).output
    assert (tmp_path / "out" / "support.j2").read_text(encoding="utf-8") == TEMPLATE
    assert "autonomy: propose" in (tmp_path / "out" / "support.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nope"), "nightloop prompts import prompts/"),
        (("show", "support/7"), "has no version 7: it has v1"),
        (("diff", "support", "support@staging"), "nightloop prompts label support VERSION staging"),
        (("label", "support", "3", "production"), "has no version 3"),
        (("rollback", "support"), "no earlier version"),
        (("history", "nope"), "No prompt named 'nope'"),
        (("import", "missing-dir"), "nightloop prompts export missing-dir"),
        (("show", "bad/name/x"), "must be a version number"),
    ],
)
def test_errors_exit_non_zero_and_name_the_fix(run, prompts_dir: Path, args, message) -> None:
    run("import", str(prompts_dir))
    result = run(*args, expect=1)
    assert message in " ".join(result.output.split())  # rich wraps long lines
    assert "Traceback" not in result.output


def test_importing_an_empty_directory_is_an_error(run, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "No <name>.j2 templates in empty" in run("import", "empty", expect=1).output


def test_malformed_yaml_names_the_file(run, prompts_dir: Path) -> None:
    (prompts_dir / "support.yaml").write_text("autonomy: [\n", encoding="utf-8")
    output = " ".join(run("import", "prompts", expect=1).output.split())  # relative: rich may wrap a long path
    assert "prompts/support.yaml is not valid YAML (line 2)" in output


def test_every_prompts_command_and_option_has_help() -> None:
    group = typer.main.get_command(prompts_cli.prompts_app)
    assert group.help
    for name, command in group.commands.items():
        assert command.help, f"`nightloop prompts {name}` has no help"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"`nightloop prompts {name} {param.opts[0]}` has no help"
            if isinstance(param, click.Argument):
                assert getattr(param, "help", None), f"`nightloop prompts {name} {param.name.upper()}` has no help"
    assert set(group.commands) == {"list", "show", "diff", "import", "export", "label", "history", "rollback", "adopt", "versions"}


def test_adopt_manages_a_prompt_known_only_from_conversations(tmp_path) -> None:
    from nightloop.models import Conversation, Message
    from nightloop.store import Store
    from nightloop.templates import render

    db = tmp_path / "adopt.db"
    system = "You answer {{ like this }} literally.\nBe kind."
    with Store(db) as store:
        store.conversations.add(
            Conversation(
                id=f"c{i}",
                prompt_name="legacy_bot",
                messages=[Message(role="system", content=system if i else "odd one"), Message(role="user", content="hi")],
            )
            for i in range(3)
        )
    app = _app()
    result = CliRunner().invoke(app, ["prompts", "adopt", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "legacy_bot: adopted as v1" in result.output
    with Store(db) as store:
        version = store.prompts.get("legacy_bot", 1)
        assert store.prompts.label_version("legacy_bot", "production") == 1
        assert render(version.template) == system
    again = CliRunner().invoke(app, ["prompts", "adopt", "legacy_bot", "--db", str(db)])
    assert again.exit_code == 1 and "already managed" in again.output


def test_adopt_keeps_customer_data_rendered_into_the_system_prompt_out_of_the_template(tmp_path) -> None:
    from nightloop.models import Conversation, Message
    from nightloop.store import Store

    db = tmp_path / "adopt.db"
    system = "You help Acme Outdoor customers.\nThe customer is Ms Jane Oyelaran, jane.oyelaran@example.com, +44 7700 900123."
    with Store(db) as store:
        store.conversations.add(
            Conversation(id=f"c{i}", prompt_name="legacy_bot", messages=[Message(role="system", content=system), Message(role="user", content="hi")])
            for i in range(2)
        )
    result = CliRunner().invoke(_app(), ["prompts", "adopt", "legacy_bot", "--db", str(db)])
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        version = store.prompts.get("legacy_bot", 1)
    assert version.template.startswith("You help Acme Outdoor customers.\n")
    for value in ("Oyelaran", "jane.oyelaran@example.com", "7700 900123"):
        assert value not in version.template
    assert "[EMAIL]" in version.template and "replaced by placeholders" in version.message
