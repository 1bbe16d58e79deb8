"""Failure classifier against the real conversations' ground truth: precision, recall, F1 per data set.

"Conversation failed" = the classifier found at least one failure; ground truth = ``success: false``
in ``labels/<name>.labels.json`` (read here only, never by the classifier).

    .venv/bin/python benchmarks/classify_real.py [--data DIR] [--show-errors N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from nightloop.classify import RECOVERED_CONFIDENCE, classify_conversation
from nightloop.config import ClassifyConfig
from nightloop.models import Conversation

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real"


def scores(pairs: list[tuple[bool, bool]]) -> dict[str, float]:
    """Precision, recall, F1 of ``(predicted_failed, actually_failed)`` pairs."""
    tp = sum(p and a for p, a in pairs)
    fp = sum(p and not a for p, a in pairs)
    fn = sum(a and not p for p, a in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": len(pairs), "tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def line(name: str, s: dict[str, float]) -> str:
    return (
        f"{name:<34} n={s['n']:>4}  tp={s['tp']:>4} fp={s['fp']:>3} fn={s['fn']:>3}  "
        f"precision={s['precision']:.3f} recall={s['recall']:.3f} F1={s['f1']:.3f}"
    )


def evaluate(
    path: Path, labels: dict, config: ClassifyConfig
) -> tuple[list[tuple[bool, bool]], list[tuple[bool, bool]], list[tuple[bool, bool]], Counter, list[str], float]:
    pairs: list[tuple[bool, bool]] = []
    ok_pairs: list[tuple[bool, bool]] = []  # harness status "ok": no timeout/error to give the failure away
    sure_pairs: list[tuple[bool, bool]] = []  # counting only failures above RECOVERED_CONFIDENCE
    kinds: Counter = Counter()
    mistakes: list[str] = []
    started = time.perf_counter()
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        conversation = Conversation.from_jsonl(raw)
        failures = classify_conversation(conversation, config)
        predicted, actual = bool(failures), not labels[conversation.id]["success"]
        for detector in {f.detector for f in failures}:  # per detector: conversations flagged, of which failed
            kinds[(detector, actual)] += 1
        pairs.append((predicted, actual))
        sure_pairs.append((any(f.confidence > RECOVERED_CONFIDENCE for f in failures), actual))
        if conversation.outcome.status == "ok":
            ok_pairs.append((predicted, actual))
        if predicted != actual:
            shown = failures[0].evidence[:120] if failures else "-"
            mistakes.append(f"  {'FP' if predicted else 'FN'} {conversation.id}: {shown}")
    return pairs, ok_pairs, sure_pairs, kinds, mistakes, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory with *.jsonl and labels/")
    parser.add_argument("--show-errors", type=int, default=0, help="print up to N misclassified conversations per file")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skip: {args.data} not found (the shared real data exists only in dev sessions and CI)")
        return 0
    variants = {
        "default": ClassifyConfig(),
        # Without the outcome's score, only what the conversation itself shows.
        "content only (no feedback score)": ClassifyConfig(negative_feedback_below=float("-inf")),
    }
    for variant, config in variants.items():
        print(f"== {variant}")
        everything: list[tuple[bool, bool]] = []
        for path in sorted(args.data.glob("*.jsonl")):
            labels_path = args.data / "labels" / f"{path.stem}.labels.json"
            if not labels_path.exists():
                print(f"{path.name}: no labels, skipped")
                continue
            labels = json.loads(labels_path.read_text(encoding="utf-8"))
            pairs, ok_pairs, sure_pairs, kinds, mistakes, seconds = evaluate(path, labels, config)
            everything.extend(pairs)
            print(line(path.stem, scores(pairs)) + f"  ({len(pairs) / seconds:,.0f} conv/s)")
            print(line("  of which status ok", scores(ok_pairs)))
            print(line(f"  only confidence > {RECOVERED_CONFIDENCE}", scores(sure_pairs)))
            detectors = sorted({name for name, _ in kinds})
            print("  flagged by (conversations, of which labelled failed): "
                  + ", ".join(f"{d} {kinds[(d, True)] + kinds[(d, False)]} ({kinds[(d, True)]})" for d in detectors))
            for mistake in mistakes[: args.show_errors]:
                print(mistake)
        print(line("overall", scores(everything)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
