"""Classifier vs scorer on what a correct answer is, over every real conversation with an expected answer.

For each conversation in ``../shared/data/real/*.jsonl`` whose ``outcome.expected`` is set, the classifier's
verdict (does the final answer state the reference? the rule behind ``wrong_output``) is compared with the
reference scorer's verdict on the same final answer, as a replay would score it. Target: they agree on 100%
of the answers both decide. The issue's four synthetic pairs are checked too.

    .venv/bin/python benchmarks/answers_agree.py [--data DIR] [--show N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from nightloop.answers import final_answer_index
from nightloop.classify import reference_verdict
from nightloop.config import ClassifyConfig
from nightloop.models import Conversation, Expectation, Message, ReplayCase
from nightloop.score import Scoring

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real"
SYNTHETIC = [(True, "yes"), ("25%", "0.25"), ([1, 2], "1, 2"), ("4000", "The total is 4,000.")]


def scorer_verdict(scoring: Scoring, expected: Any, output: str) -> bool | None:
    """The reference scorer's pass/fail for ``output``, or None when it could not judge (a scorer fault)."""
    case = ReplayCase(
        id="bench@1",
        prompt_name="bench",
        messages=[Message(role="user", content="task")],
        expectation=Expectation(kind="reference", value=expected),
        origin="bench#wrong_output@1",
    )
    result = asyncio.run(scoring.score(case, output, tool_calls=0))
    return None if result.error else result.passed


def classifier_verdict(expected: Any, output: str, config: ClassifyConfig) -> bool | None:
    conversation = Conversation(
        id="bench", messages=[Message(role="user", content="task"), Message(role="assistant", content=output)],
        outcome={"expected": expected},
    )
    return reference_verdict(conversation, config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--show", type=int, default=5, help="disagreements to print")
    args = parser.parse_args(argv)
    config = ClassifyConfig()
    scoring = Scoring(rules=config)

    ok = True
    for expected, output in SYNTHETIC:
        c, s = classifier_verdict(expected, output, config), scorer_verdict(scoring, expected, output)
        agree = c == s
        ok &= agree
        print(f"synthetic {expected!r:>8} | {output!r:<24} classify={c} scorer={s} {'agree' if agree else 'DISAGREE'}")

    files = sorted(args.data.glob("*.jsonl")) if args.data.is_dir() else []
    if not files:
        print(f"no conversations under {args.data} (../shared is only present in the project's dev sessions)")
        return 0 if ok else 1
    total_both = total_agree = 0
    for path in files:
        with_expected = classified = scored = both = agree = 0
        shown: list[str] = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            conversation = Conversation.from_jsonl(raw)
            expected = conversation.outcome.expected
            if expected is None:
                continue
            with_expected += 1
            final = final_answer_index(conversation.messages)
            if final is None:
                continue
            c = reference_verdict(conversation, config)
            s = scorer_verdict(scoring, expected, conversation.messages[final].text)
            classified += c is not None
            scored += s is not None
            if c is None or s is None:
                continue
            both += 1
            agree += c == s
            if c != s and len(shown) < args.show:
                shown.append(f"    {conversation.id}: expected {expected!r:.40} classify={c} scorer={s}")
        total_both += both
        total_agree += agree
        rate = agree / both if both else 1.0
        print(
            f"{path.name:<22} with expected={with_expected:>4} classify decides={classified:>4} "
            f"scorer decides={scored:>4} both={both:>4} agree={agree:>4} ({rate:.1%})"
        )
        print("\n".join(shown)) if shown else None
    rate = total_agree / total_both if total_both else 1.0
    met = total_agree == total_both and ok
    print(f"overall: agree on {total_agree}/{total_both} answers both decide ({rate:.1%}); target 100%: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
