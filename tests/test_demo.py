"""`make demo`: three simulated nights end with a lower failure rate than they started with."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from nightloop.demo import run_demo

REPO = Path(__file__).resolve().parents[1]


def test_demo_failure_rate_falls_over_three_nights(tmp_path: Path) -> None:
    out = io.StringIO()
    rows = run_demo(workdir=tmp_path / "demo", prompts_dir=REPO / "prompts", console=Console(file=out, width=140))
    assert len(rows) == 3
    assert rows[-1]["failure_rate"] < rows[0]["failure_rate"]
    assert any(r["promoted"] for r in rows)
    text = out.getvalue()
    assert "on the reviewer's behalf" in text and "failure rate per night" in text
    assert "nightloop ui --db" in text  # the closing lines say how to open the UI (served in tests/ui/test_demo_browser.py)
    assert "offline simulator" in text
    assert all(later["failure_rate"] < earlier["failure_rate"] for earlier, later in zip(rows, rows[1:])), rows
    # Night 3's challenger is not held and forgotten: it is promoted, tested again as a challenger held from night 2,
    # or carried to the next night's new cases.
    night_3 = text.split("Night 3:")[1]
    assert rows[-1]["promoted"] or re.search(
        r"challenger support_agent-v\d+-\w+ held since \S+ is tested again tonight|held for the next night's new cases", night_3
    ), night_3


def test_demo_refuses_to_wipe_a_folder_it_did_not_make(tmp_path: Path) -> None:
    import pytest

    from nightloop.errors import NightloopError

    precious = tmp_path / "work"
    precious.mkdir()
    (precious / "important.txt").write_text("keep me")
    with pytest.raises(NightloopError, match="not made by the demo"):
        run_demo(workdir=precious, prompts_dir=REPO / "prompts", nights=1, per_night=10, console=Console(file=io.StringIO()))
    assert (precious / "important.txt").read_text() == "keep me"


def test_demo_reuses_a_folder_an_older_demo_made(tmp_path: Path) -> None:
    old = tmp_path / "demo"
    (old / "logs").mkdir(parents=True)
    (old / "nightloop.db").write_text("old store")
    rows = run_demo(workdir=old, prompts_dir=REPO / "prompts", nights=1, per_night=20, console=Console(file=io.StringIO()))
    assert len(rows) == 1 and (old / ".nightloop-demo").exists()
