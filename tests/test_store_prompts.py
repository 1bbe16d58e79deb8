"""The versioned prompt store: versions, labels, history, rollback, prompts/ mirror, get_prompt, diffs."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nightloop
from nightloop.errors import LabelConflict, NightloopError, NotFound, TemplateError
from nightloop.models import PromptMeta, sha256_text
from nightloop.prompt_files import PromptFileError, export_prompts, import_prompts, read_prompt_dir
from nightloop.review import changed_lines, diff_stats, render_diff, unified_diff
from nightloop.store import Store
from nightloop.store.db import open_db
from nightloop.serving import ManagedPrompt
from nightloop.serving import read_prompt as get_prompt
from nightloop.store.prompts import InvalidName, migrations, parse_ref

TEMPLATE = "You help customers of {{ shop }}.\nBe brief.\n"


@pytest.fixture
def store() -> Store:
    with Store(None) as s:
        yield s


def _prompts_dir(root: Path, templates: dict[str, str], metas: dict[str, str] | None = None) -> Path:
    directory = root / "prompts"
    directory.mkdir(exist_ok=True)
    for name, template in templates.items():
        (directory / f"{name}.j2").write_text(template, encoding="utf-8")
    for name, text in (metas or {}).items():
        (directory / f"{name}.yaml").write_text(text, encoding="utf-8")
    return directory


# --- versions ---


def test_versions_are_numbered_from_one_and_hashed(store: Store) -> None:
    first = store.prompts.create_version("support", TEMPLATE, created_by="alice", message="start")
    second = store.prompts.create_version("support", TEMPLATE + "Quote prices in EUR.\n", created_by="bob")
    other = store.prompts.create_version("billing", "Bill {{ who }}.", created_by="alice")

    assert [first.version, second.version, other.version] == [1, 2, 1]
    assert first.sha256 == sha256_text(TEMPLATE)
    assert store.prompts.get("support", 1) == first
    assert store.prompts.latest("support") == second
    assert [v.version for v in store.prompts.versions("support")] == [1, 2]
    assert store.prompts.names() == ["billing", "support"]
    assert store.prompts.find_by_sha("support", sha256_text(TEMPLATE)) == first
    assert store.prompts.find_by_sha("support", "0" * 64) is None


def test_versions_cannot_be_updated_or_deleted(store: Store) -> None:
    store.prompts.create_version("support", TEMPLATE, created_by="alice")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE prompt_versions SET template = 'changed'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM prompt_versions")
    assert store.prompts.get("support", 1).template == TEMPLATE


def test_parent_defaults_to_production_then_latest(store: Store) -> None:
    repo = store.prompts
    assert repo.create_version("p", "one", created_by="a").parent is None
    assert repo.create_version("p", "two", created_by="a").parent == 1  # no production yet: latest
    repo.set_label("p", "production", 1, "a")
    assert repo.create_version("p", "three", created_by="a").parent == 1  # edits what production runs
    assert repo.create_version("p", "four", created_by="a", parent=2).parent == 2
    with pytest.raises(NotFound, match="v1-v4"):
        repo.create_version("p", "five", created_by="a", parent=9)


def test_a_template_that_does_not_parse_is_refused(store: Store) -> None:
    with pytest.raises(TemplateError, match="does not parse"):
        store.prompts.create_version("p", "Hello {{ name ", created_by="a")
    assert store.prompts.versions("p") == []


def test_names_are_checked_against_the_ref_syntax(store: Store) -> None:
    for bad in ("a@b", "a/b", "", " x"):
        with pytest.raises(InvalidName):
            store.prompts.create_version(bad, "x", created_by="a")
    store.prompts.create_version("p", "x", created_by="a")
    with pytest.raises(InvalidName, match="cannot be moved"):
        store.prompts.set_label("p", "latest", 1, "a")


def test_not_found_messages_say_what_exists_and_what_to_do(store: Store) -> None:
    with pytest.raises(NotFound, match=r"store has no prompts yet.*nightloop prompts import prompts/"):
        store.prompts.latest("support")
    store.prompts.create_version("support", TEMPLATE, created_by="a")
    with pytest.raises(NotFound, match=r"No prompt named 'supprot'.*known: support"):
        store.prompts.get("supprot", 1)
    with pytest.raises(NotFound, match=r"has no version 3: it has v1"):
        store.prompts.get("support", 3)
    with pytest.raises(NotFound, match=r"no label 'production'.*nightloop prompts label support VERSION production"):
        store.prompts.resolve("support")


def test_resolve_understands_every_ref_form(store: Store) -> None:
    repo = store.prompts
    for text in ("v1", "v2", "v3"):
        repo.create_version("p", text, created_by="a")
    repo.set_label("p", "production", 2, "a")
    repo.set_label("p", "staging", 1, "a")
    assert repo.resolve("p").template == "v2"
    assert repo.resolve("p@production").version == 2
    assert repo.resolve("p@staging").version == 1
    assert repo.resolve("p@latest").version == 3
    assert repo.resolve("p/1").template == "v1"
    assert str(parse_ref("p")) == "p@production"
    with pytest.raises(InvalidName, match="version number"):
        parse_ref("p/two")


# --- labels ---


def test_move_label_is_compare_and_swap(store: Store) -> None:
    repo = store.prompts
    for text in ("a", "b", "c"):
        repo.create_version("p", text, created_by="x")
    repo.move_label("p", "production", 1, expected_version=None, moved_by="x")
    repo.move_label("p", "production", 2, expected_version=1, moved_by="x")

    with pytest.raises(LabelConflict) as caught:
        repo.move_label("p", "production", 3, expected_version=1, moved_by="y")
    message = str(caught.value)
    assert "moved from v1 to v2 since you read it" in message
    assert "nightloop prompts show p@production" in message
    assert repo.label_version("p", "production") == 2
    assert [m.to_version for m in repo.label_history("p")] == [1, 2]

    with pytest.raises(NotFound):
        repo.move_label("p", "production", 7, expected_version=2, moved_by="x")


def test_history_records_every_move_with_who_and_why(store: Store) -> None:
    repo = store.prompts
    repo.create_version("p", "a", created_by="x")
    repo.create_version("p", "b", created_by="x")
    repo.set_label("p", "production", 1, "alice", "first")
    repo.set_label("p", "staging", 2, "bob")
    repo.set_label("p", "production", 2, "carol", "approved r-7")
    repo.set_label("p", "production", 2, "carol", "no-op")  # already there: not a move

    moves = repo.label_history("p")
    assert [(m.label, m.from_version, m.to_version, m.moved_by) for m in moves] == [
        ("production", None, 1, "alice"),
        ("staging", None, 2, "bob"),
        ("production", 1, 2, "carol"),
    ]
    assert [m.reason for m in repo.label_history("p", "production")] == ["first", "approved r-7"]
    assert repo.labels("p") == {"production": 2, "staging": 2}
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM label_history")


def test_rollback_returns_to_the_previous_version(store: Store) -> None:
    repo = store.prompts
    for text in ("a", "b", "c"):
        repo.create_version("p", text, created_by="x")
    with pytest.raises(NotFound, match="no earlier version"):
        repo.rollback("p", moved_by="watch")
    with pytest.raises(NotFound, match="No prompt named 'q'"):
        repo.rollback("q", moved_by="watch")
    repo.set_label("p", "production", 1, "x")
    with pytest.raises(NotFound, match="never moved from another version"):
        repo.rollback("p", moved_by="watch")
    repo.set_label("p", "production", 3, "x")

    assert repo.rollback("p", moved_by="watch", reason="breakage") == 1
    assert repo.label_version("p", "production") == 1
    last = repo.label_history("p")[-1]
    assert (last.from_version, last.to_version, last.moved_by, last.reason) == (3, 1, "watch", "breakage")


def test_meta_round_trips_and_defaults(store: Store) -> None:
    repo = store.prompts
    repo.create_version("p", "a", created_by="x")
    assert repo.get_meta("p") == PromptMeta()
    meta = PromptMeta(description="Support", variables=["shop"], autonomy="auto", owner="team-a")
    repo.set_meta("p", meta)
    assert repo.get_meta("p").model_dump() == meta.model_dump()
    with pytest.raises(NotFound):
        repo.get_meta("unknown")


def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    with Store(path) as s:
        s.prompts.create_version("p", "a", created_by="x")
    db = open_db(path, [migrations])
    assert migrations.pending(db) == []
    assert db["prompt_versions"].count == 1
    db.conn.close()


# --- prompts/ directory ---


def test_import_twice_is_a_no_op(store: Store, tmp_path: Path) -> None:
    directory = _prompts_dir(tmp_path, {"support": TEMPLATE, "billing": "Bill {{ who }}."})
    created = import_prompts(store, directory)
    assert sorted((v.name, v.version, v.created_by) for v in created) == [
        ("billing", 1, "human"),
        ("support", 1, "human"),
    ]
    assert store.prompts.labels("support") == {"production": 1}

    assert import_prompts(store, directory) == []
    assert len(store.prompts.versions("support")) == 1
    assert len(store.prompts.label_history("support")) == 1


def test_a_hand_edit_becomes_a_human_version_without_moving_production(store: Store, tmp_path: Path) -> None:
    directory = _prompts_dir(tmp_path, {"support": TEMPLATE})
    import_prompts(store, directory)
    (directory / "support.j2").write_text(TEMPLATE + "Always quote prices in EUR.\n", encoding="utf-8")

    [edit] = import_prompts(store, directory, created_by="dana")
    assert (edit.version, edit.parent, edit.created_by) == (2, 1, "dana")
    assert "support.j2" in edit.message
    assert store.prompts.label_version("support", "production") == 1


def test_export_import_round_trip(store: Store, tmp_path: Path) -> None:
    repo = store.prompts
    repo.create_version("support", TEMPLATE, created_by="a")
    repo.create_version("support", TEMPLATE + "v2\n", created_by="a")
    repo.set_label("support", "production", 1, "a")
    repo.set_meta("support", PromptMeta(description="Support", variables=["shop"], autonomy="propose"))
    repo.create_version("draft", "only {{ latest }}", created_by="a")  # no production: latest is exported

    written = export_prompts(store, tmp_path / "out")
    assert sorted((v.name, v.version) for v in written) == [("draft", 1), ("support", 1)]
    assert (tmp_path / "out" / "support.j2").read_text(encoding="utf-8") == TEMPLATE
    assert "exported-version: 1" in (tmp_path / "out" / "support.yaml").read_text(encoding="utf-8")

    files = {name: (template, meta) for name, template, meta in read_prompt_dir(tmp_path / "out")}
    assert files["support"][0] == TEMPLATE
    assert files["support"][1].autonomy == "propose"
    assert import_prompts(store, tmp_path / "out") == []  # the mirror is already in the store

    with Store(None) as fresh:
        import_prompts(fresh, tmp_path / "out")
        assert fresh.prompts.resolve("support").template == TEMPLATE
        assert fresh.prompts.get_meta("support").model_dump() == repo.get_meta("support").model_dump()


def test_an_edit_of_an_older_export_records_that_version_as_parent(store: Store, tmp_path: Path) -> None:
    repo = store.prompts
    repo.create_version("support", TEMPLATE, created_by="a")
    repo.set_label("support", "production", 1, "a")
    export_prompts(store, tmp_path / "p")
    repo.create_version("support", "unrelated {{ shop }}", created_by="a", parent=None)
    repo.set_label("support", "production", 2, "a")
    (tmp_path / "p" / "support.j2").write_text(TEMPLATE + "edited\n", encoding="utf-8")

    [edit] = import_prompts(store, tmp_path / "p")
    assert (edit.version, edit.parent) == (3, 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    template=st.text(
        alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="{}%#\r\x00\x85\u2028\u2029"),
        max_size=200,
    )
)
def test_any_plain_text_template_survives_export_and_import(tmp_path: Path, template: str) -> None:
    with Store(None) as source, Store(None) as target:
        source.prompts.create_version("p", template, created_by="a")
        export_prompts(source, tmp_path / "h")
        import_prompts(target, tmp_path / "h")
        assert target.prompts.resolve("p").sha256 == sha256_text(template)


def test_malformed_yaml_is_an_error_naming_the_file(store: Store, tmp_path: Path) -> None:
    directory = _prompts_dir(tmp_path, {"support": TEMPLATE}, {"support": "description: [unclosed\n"})
    with pytest.raises(PromptFileError, match=r"support\.yaml is not valid YAML"):
        import_prompts(store, directory)
    assert store.prompts.names() == []  # nothing half-imported


@pytest.mark.parametrize(
    ("files", "metas", "message"),
    [
        ({"support": TEMPLATE}, {"support": "- a list\n"}, r"support\.yaml must be a YAML mapping"),
        ({"support": TEMPLATE}, {"support": "autonomy: yolo\n"}, r"support\.yaml has invalid metadata: autonomy"),
        ({"support": "{% if %}"}, {}, r"support\.j2: Template does not parse"),
        ({"support": TEMPLATE}, {"orphan": "description: x\n"}, r"orphan\.yaml has no template"),
        ({"bad@name": TEMPLATE}, {}, r"Rename the file"),
    ],
)
def test_bad_prompt_files_are_explained(store: Store, tmp_path: Path, files, metas, message) -> None:
    directory = _prompts_dir(tmp_path, files, metas)
    with pytest.raises(PromptFileError, match=message):
        import_prompts(store, directory)


def test_two_metadata_files_for_one_prompt_are_refused(store: Store, tmp_path: Path) -> None:
    directory = _prompts_dir(tmp_path, {"support": TEMPLATE}, {"support": "description: a\n"})
    (directory / "support.yml").write_text("description: b\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match=r"support\.yaml and .*support\.yml describe the same prompt"):
        read_prompt_dir(directory)


def test_a_missing_directory_says_how_to_create_it(store: Store, tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="nightloop prompts export"):
        import_prompts(store, tmp_path / "nope")


# --- the agent API ---


def test_get_prompt_renders_the_production_version(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as s:
        s.prompts.create_version("support", TEMPLATE, created_by="a")
        s.prompts.create_version("support", "New {{ shop }}", created_by="a")
        s.prompts.set_label("support", "production", 1, "a")

    prompt = nightloop.get_prompt("support", db=path)
    assert isinstance(prompt, ManagedPrompt)
    assert (prompt.version, prompt.label, prompt.sha256) == (1, "production", sha256_text(TEMPLATE))
    assert prompt.render(shop="Acme") == "You help customers of Acme.\nBe brief.\n"
    assert get_prompt("support", version=2, db=str(path)).render(shop="X") == "New X"
    assert get_prompt("support", label="latest", db=path).version == 2
    with Store(path) as s:
        assert get_prompt("support", db=s).version == 1


def test_get_prompt_defaults_to_the_configured_store(isolated_env: Path) -> None:
    with Store(isolated_env / "nightloop.db") as s:  # NIGHTLOOP_DB points here (conftest)
        s.prompts.create_version("support", TEMPLATE, created_by="a")
        s.prompts.set_label("support", "production", 1, "a")
    assert nightloop.get_prompt("support").version == 1


def test_get_prompt_is_strict_and_sandboxed(store: Store) -> None:
    store.prompts.create_version("p", "Hi {{ name }}", created_by="a")
    store.prompts.create_version("evil", "{{ ''.__class__.__mro__[1].__subclasses__() }}", created_by="a")
    with pytest.raises(TemplateError, match="name"):
        get_prompt("p", version=1, db=store).render()
    with pytest.raises(TemplateError):
        get_prompt("evil", version=1, db=store).render()


def test_get_prompt_explains_what_is_missing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"does not exist.*nightloop prompts import prompts/"):
        get_prompt("support", db=tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(NotFound, match="nightloop prompts import prompts/"):
        get_prompt("support", db=store)
    store.prompts.create_version("support", TEMPLATE, created_by="a")
    with pytest.raises(NotFound, match="no label 'production'"):
        get_prompt("support", db=store)
    assert issubclass(NotFound, NightloopError)


# --- diffs ---


def test_unified_diff_and_stats() -> None:
    old = "line one\nline two\nline three\n"
    new = "line one\nline 2\nline three\nline four\n"
    diff = unified_diff(old, new, "p/1", "p/2")
    assert diff.startswith("--- p/1\n+++ p/2\n@@")
    assert "-line two\n" in diff and "+line 2\n" in diff and "+line four\n" in diff
    assert diff_stats(old, new) == (2, 1)
    assert changed_lines(old, new) == 3
    assert unified_diff(old, old, "a", "b") == ""
    assert diff_stats(old, old) == (0, 0)


def test_unified_diff_marks_a_missing_final_newline() -> None:
    diff = unified_diff("a\nb", "a\nc", "x", "y")
    assert diff.count("\\ No newline at end of file") == 2
    assert diff.endswith("\n")


def test_render_diff_colours_lines_without_reading_markup() -> None:
    from rich.console import Console

    diff = unified_diff("keep\nold [bold]x[/bold]\n", "keep\nnew\n", "a", "b")
    console = Console(file=io.StringIO(), record=True, width=80, force_terminal=True)
    console.print(render_diff(diff))
    assert "-old [bold]x[/bold]" in console.export_text()  # brackets are template text, not rich markup
    styles = {line.plain[:2]: str(line.style) for line in render_diff(diff).renderables}
    assert styles == {"--": "bold red", "++": "bold green", "@@": "cyan", " k": "", "-o": "red", "+n": "green"}
    assert "no changes" in render_diff("").renderables[0].plain


def test_export_writes_to_an_existing_yml_meta_file_and_import_still_reads(store: Store, tmp_path: Path) -> None:
    directory = tmp_path / "prompts"
    directory.mkdir()
    (directory / "support.j2").write_text("Hello {{ shop }}\n", encoding="utf-8")
    (directory / "support.yml").write_text("description: Support\nvariables: [shop]\n", encoding="utf-8")
    import_prompts(store, directory)
    store.prompts.create_version("support", "Hello again {{ shop }}\n", created_by="a")
    store.prompts.set_label("support", "production", 2, "a")
    export_prompts(store, directory)
    assert sorted(p.name for p in directory.iterdir()) == ["support.j2", "support.yml"]
    assert "exported-version: 2" in (directory / "support.yml").read_text(encoding="utf-8")
    assert import_prompts(store, directory) == []  # the export reads back: nothing new to record
    [(name, template, meta)] = read_prompt_dir(directory)
    assert (template, meta.description) == ("Hello again {{ shop }}\n", "Support")


# --- rendering: template errors are TemplateError, and the sandbox caps * and ** ---


@pytest.mark.parametrize(
    "template",
    [
        "{{ 1 / 0 }}",
        "{{ 'a' + 1 }}",
        "{{ 10.0 ** 400 }}",
        '{{ ("x" * 100000000)|length }}',
        "{{ [0] * 2000000 }}",
        "{{ 100000000 * 'x' }}",
        "{{ 2 ** 100000000 }}",
        "{{ (10 ** 5000)|string }}",
    ],
)
def test_a_template_failing_while_rendering_raises_template_error(template: str) -> None:
    from nightloop.templates import render

    with pytest.raises(TemplateError):
        render(template)


def test_ordinary_multiplication_and_powers_still_render() -> None:
    from nightloop.templates import render

    assert render("{{ '-' * 3 }}{{ [1, 2] * 2 }} {{ 2 ** 10 }} {{ 3 * 4 }} {{ 1.5 * 2 }}") == "---[1, 2, 1, 2] 1024 12 3.0"
