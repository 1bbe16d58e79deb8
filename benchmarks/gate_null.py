"""How often does the gate promote a candidate that does nothing, and how often does it catch a real +10 points?

Simulates nights shaped like nightloop's: K=4 candidates, 40-60 holdout + regression
cases, 3 repeats each. Every case has a latent pass probability (failure-origin cases are
hard, since they failed in production; regression cases mostly pass); repeats of a case
share it, so they are correlated. In a null night every candidate draws from the baseline's
own per-case probabilities; in an effect night each candidate raises every failure-origin
case's probability by U(0, 0.2), +10 points on average. Cost and latency are drawn from the
same per-case distributions for both arms. Each night goes through the real
``gate.decide`` and ``gate.choose_winner``; any winner in a null night is a false promotion.

Run: .venv/bin/python benchmarks/gate_null.py [--nights 1000] [--seed 0] [--test mcnemar|permutation]
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from nightloop.config import GateConfig
from nightloop.gate import PAIRED_TESTS, PairedTest, choose_winner, decide, get_paired_test
from nightloop.models import BASELINE, EvalResult, Expectation, GateDecision, Message, ReplayCase

K = 4
REPEATS = 3
FAILURE_KINDS = ("wrong_output", "user_correction", "timeout", "format", "tool_error")
KIND_WEIGHTS = (5, 4, 2, 2, 1)


@dataclass(frozen=True)
class SimCase:
    case: ReplayCase
    pass_probability: float
    tokens: int
    latency_ms: float


def simulate_cases(rng: random.Random) -> list[SimCase]:
    """40-60 holdout cases: ~60% from production failures (hard), the rest regression cases (easy)."""
    n_failure, n_regression = rng.randint(24, 36), rng.randint(16, 24)
    sims = []
    for i in range(n_failure + n_regression):
        is_regression = i >= n_failure
        kind = "regression" if is_regression else rng.choices(FAILURE_KINDS, KIND_WEIGHTS)[0]
        probability = rng.betavariate(19, 1) if is_regression else rng.betavariate(1.2, 2.8)
        case = ReplayCase(
            id=f"case-{i:03d}",
            prompt_name="support_agent",
            messages=[Message(role="user", content="…")],
            expectation=Expectation(kind="rubric"),
            origin="regression" if is_regression else f"conv-{i}#{kind}@1",
            split="holdout",
            metadata={"kind": kind},
        )
        sims.append(SimCase(case, probability, rng.randint(300, 1500), rng.lognormvariate(7.0, 0.5)))
    return sims


def simulate_arm(arm: str, sims: list[SimCase], lift: dict[str, float], rng: random.Random) -> list[EvalResult]:
    results = []
    for sim in sims:
        probability = min(1.0, sim.pass_probability + lift.get(sim.case.id, 0.0))
        for repeat in range(REPEATS):
            tokens = max(1, round(sim.tokens * rng.uniform(0.8, 1.2)))
            results.append(
                EvalResult(
                    candidate_id=arm,
                    case_id=sim.case.id,
                    repeat=repeat,
                    passed=rng.random() < probability,
                    tokens=tokens,
                    cost_usd=tokens * 0.6e-6,
                    latency_ms=sim.latency_ms * rng.lognormvariate(0.0, 0.3),
                )
            )
    return results


def simulate_night(
    rng: random.Random, effect: bool, config: GateConfig, test: PairedTest
) -> tuple[list[GateDecision], float]:
    """The night's gate decisions and the mean true lift on its failure-origin cases."""
    sims = simulate_cases(rng)
    candidate_ids = [f"cand-{k}" for k in range(K)]
    results = simulate_arm(BASELINE, sims, {}, rng)
    lifts = []
    for cid in candidate_ids:
        lift = {s.case.id: rng.uniform(0.0, 0.2) for s in sims if effect and s.case.origin != "regression"}
        failure_sims = [s for s in sims if s.case.origin != "regression"]
        lifts += [min(1.0, s.pass_probability + lift.get(s.case.id, 0.0)) - s.pass_probability for s in failure_sims]
        results += simulate_arm(cid, sims, lift, rng)
    decisions = decide(results, [s.case for s in sims], candidate_ids, config, test=test)
    return decisions, sum(lifts) / len(lifts)


def candidate_shares(decisions: list[GateDecision], config: GateConfig) -> dict[str, float]:
    """Share of candidates per verdict, per veto, and blocked by a veto although significant with the effect."""
    n = len(decisions)

    def share(test) -> float:
        return sum(1 for d in decisions if test(d)) / n

    def has_reason(prefix: str):
        return lambda d: any(r.startswith(prefix) for r in d.reasons)

    return {
        "promote": share(lambda d: d.verdict == "promote"),
        "hold": share(lambda d: d.verdict == "hold"),
        "reject": share(lambda d: d.verdict == "reject"),
        "regression veto": share(lambda d: bool(d.regressions)),
        "kind veto": share(has_reason("failure kind")),
        "cost/latency veto": share(lambda d: has_reason("mean cost")(d) or has_reason("mean latency")(d)),
        "significant but vetoed": share(
            lambda d: d.verdict == "reject" and d.p_adjusted < config.alpha and d.delta >= config.min_effect
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=1000, help="Nights per scenario (default 1000).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the one random.Random (default 0).")
    parser.add_argument("--test", choices=sorted(PAIRED_TESTS), default="mcnemar", help="Paired test.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    config = GateConfig()
    test = get_paired_test(args.test, rng)
    started = time.perf_counter()
    figures = {}
    for scenario, effect in (("null", False), ("+10", True)):
        outcomes = [simulate_night(rng, effect, config, test) for _ in range(args.nights)]
        promoted = sum(choose_winner(decisions) is not None for decisions, _ in outcomes) / args.nights
        true_lift = sum(lift for _, lift in outcomes) / args.nights
        shares = candidate_shares([d for decisions, _ in outcomes for d in decisions], config)
        figures[scenario] = promoted
        print(f"{scenario:>4}: {args.nights} nights, a winner chosen in {promoted:.3f}, "
              f"true lift on failure-origin cases {true_lift:+.3f}")
        print("      candidates: " + ", ".join(f"{name} {value:.3f}" for name, value in shares.items()))
    print(f"test={args.test} K={K} repeats={REPEATS} seed={args.seed} config={config.model_dump(exclude={'test'})} "
          f"({time.perf_counter() - started:.1f} s)")
    print(f"false_promotion={figures['null']:.3f} power={figures['+10']:.3f}")


if __name__ == "__main__":
    main()
