"""Protected lines and sections of prompts/<name>.yaml: a candidate that changes them is refused."""

from __future__ import annotations

from pathlib import Path

from nightloop.candidate_checks import validate_candidate
from nightloop.config import JudgeConfig
from nightloop.models import Candidate, ProtectedSection
from nightloop.prompt_files import import_prompts
from nightloop.protected import protected_reasons
from nightloop.store import Store

BASE = (
    "You are the support assistant of {{ shop }}.\n"
    "Never share one customer's data with another customer.\n"
    "\n"
    "Refund policy:\n"
    "- Refunds above 100 EUR go to a human.\n"
    "- Verify the order number first.\n"
    "\n"
    "Be polite.\n"
)
PROTECTED = ["Never share one customer's data with another customer.", ProtectedSection(section="Refund policy:")]


def test_changing_removing_or_editing_inside_a_protected_part_is_refused() -> None:
    softened = BASE.replace("Never share", "Rarely share")
    removed = BASE.replace("Never share one customer's data with another customer.\n", "")
    inside = BASE.replace("100 EUR", "1000 EUR")
    split = BASE.replace("- Refunds above", "Be quick.\n- Refunds above")
    assert protected_reasons(BASE, softened, PROTECTED) == [
        "changes a protected line the judge may not touch: \"Never share one customer's data with another customer.\""
    ]
    assert len(protected_reasons(BASE, removed, PROTECTED)) == 1
    assert protected_reasons(BASE, inside, PROTECTED) == [
        'changes a protected line the judge may not touch: "Refund policy:" (and the 2 line(s) of its section)'
    ]
    assert len(protected_reasons(BASE, split, PROTECTED)) == 1


def test_edits_elsewhere_and_moving_a_protected_block_whole_are_allowed() -> None:
    elsewhere = BASE.replace("Be polite.", "Be polite and brief. Quote prices in EUR.")
    moved = BASE.replace("Be polite.\n", "") .replace("You are", "Be polite.\nYou are")
    assert protected_reasons(BASE, elsewhere, PROTECTED) == []
    assert protected_reasons(BASE, moved, PROTECTED) == []
    assert protected_reasons(BASE, BASE.replace("Never", "Rarely"), []) == []


def test_protected_lines_come_from_the_yaml_and_refuse_the_candidate(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "support.j2").write_text(BASE, encoding="utf-8")
    (prompts / "support.yaml").write_text(
        "variables: [shop]\nprotected:\n"
        "  - \"Never share one customer's data with another customer.\"\n"
        "  - section: \"Refund policy:\"\n",
        encoding="utf-8",
    )
    with Store(tmp_path / "s.db") as store:
        import_prompts(store, prompts)
        protected = store.prompts.get_meta("support").protected
    assert protected == PROTECTED
    candidate = Candidate(id="c", prompt_name="support", base_version=1, template=BASE.replace("100 EUR", "5000 EUR"))
    reasons = validate_candidate(
        candidate, base_template=BASE, conversation_texts=[], config=JudgeConfig(), protected=protected
    )
    assert reasons == ['changes a protected line the judge may not touch: "Refund policy:" (and the 2 line(s) of its section)']
