"""The gate over many nights: false promotions, adoption of a worse prompt, and power — new gate beside today's.

Nights shaped like nightloop's, with *independent* noise per rollout (every repeat of every arm is its own
Bernoulli draw, as with a real model at temperature > 0). Each night has ``cases`` gated cases (60 % from
production failures, hard: p ~ Beta(1.2, 2.8); 40 % regression cases, easy: p ~ Beta(19, 1)), as many train
cases as failure cases, and K = 4 fresh candidates from the judge. The new gate starts with ``[replay] repeats``
first repeats (1) per holdout case and ``regression_repeats`` (1) per regression case; today's gate with 3 on every case. A world fixes every candidate's
true effect on the gated pass rate:

- ``null``: every candidate is exactly as good as production, every night, for a 30-night horizon;
- ``-5``: every candidate is 5 points worse (p scaled down in proportion to p), for 30 nights;
- ``+10``: every candidate is 10 points better (p raised in proportion to 1 − p), for up to 3 nights.

A run is one horizon; a promotion ends it. The new gate runs exactly as in a night: ``gate.gate_night`` on the
night's results, the held challenger and its evidence carried through the real ``challenger`` module over an
in-memory store. Select-then-test means only the challenger and the baseline are replayed on the gated cases;
then, as the replay stage does, up to ``extra_repeats`` more paired repeats, ``extra_step`` at a time, on the gated cases
where some first repeat failed (``gate_select.cases_worth_more_repeats``). Beside it, in the same worlds and the same run:
the new gate with 3 first repeats on holdout cases, and with 3 and no extra repeats, the new gate with each night standing alone (``evidence = "night"``), and today's gate (``benchmarks/legacy_gate.py``: majority McNemar, Holm over K,
per-case regression veto; every candidate on every case).

Prints, per number of gated cases: false promotion over the null horizon, adoption of the -5 candidate over the
horizon, power for +10 within 1 and within 3 nights, rollouts a night, the harm tests' fire rate on null and -5
challengers, and what 3 repeats alone allow in one night (the exact sign-flip test at alpha / 30).

Run: .venv/bin/python benchmarks/gate_power.py [--runs 60] [--seed 0] [--cases 45 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import legacy_gate  # noqa: E402  (today's gate, frozen, next to this script)

from nightloop.challenger import carried_challenger, record_night  # noqa: E402
from nightloop.config import GateConfig, ReplayConfig  # noqa: E402
from nightloop.gate import choose_winner, gate_night, select_challenger  # noqa: E402
from nightloop.gate_select import by_first_repeats, cases_worth_more_repeats, extra_steps, first_repeats, testing_batches  # noqa: E402
from nightloop.models import BASELINE, Candidate  # noqa: E402
from nightloop.store import Store  # noqa: E402

K = 4
FIRST_REPEATS = ReplayConfig().repeats  # the new gate's first repeats on holdout cases
LEGACY_REPEATS = 3  # today's gate: every candidate, 3 repeats, every case
TRAIN_REPEATS = ReplayConfig().train_repeats
REGRESSION_REPEATS = ReplayConfig().regression_repeats
HORIZON = 30
POWER_NIGHTS = 3
KINDS = ("wrong_output", "user_correction", "timeout", "tool_error")
KIND_WEIGHTS = np.array([5, 4, 2, 1]) / 12
PROMPT = "support_agent"
FIRST = date(2026, 11, 1)


@dataclass(frozen=True, slots=True)
class Case:
    """The fields of a ``ReplayCase`` the gate reads (a pydantic model per case and result would dominate the run)."""

    id: str
    origin: str
    split: str
    metadata: dict


@dataclass(frozen=True, slots=True)
class Result:
    """The fields of an ``EvalResult`` the gate reads."""

    candidate_id: str
    case_id: str
    repeat: int
    passed: bool
    cost_usd: float
    latency_ms: float
    error: None = None


@dataclass
class Night:
    cases: list[Case]
    probability: dict[str, float]  # baseline pass probability per case


def make_night(rng: np.random.Generator, n_gated: int, number: int) -> Night:
    n_failure = round(0.6 * n_gated)
    total = n_gated + n_failure
    kinds = rng.choice(len(KINDS), size=total, p=KIND_WEIGHTS)
    hard, easy = rng.beta(1.2, 2.8, size=total), rng.beta(19, 1, size=total)
    cases, probability = [], {}
    for i in range(total):
        gated = i < n_gated
        regression = gated and i >= n_failure
        kind = "regression" if regression else KINDS[kinds[i]]
        case_id = f"n{number}-{'g' if gated else 't'}{i:03d}"
        origin = "regression" if regression else f"conv-{case_id}#{kind}@1"
        cases.append(Case(case_id, origin, "holdout" if gated else "train", {"kind": kind}))
        probability[case_id] = float(easy[i] if regression else hard[i])
    return Night(cases, probability)


def shifted(night: Night, effect: float) -> dict[str, float]:
    """Per-case probabilities moved so that the mean over the gated cases moves by ``effect``."""
    p = np.array([night.probability[c.id] for c in night.cases])
    gated = np.array([c.split == "holdout" for c in night.cases])
    if effect >= 0:
        room = 1 - p
        q = p + effect * room / room[gated].mean()
    else:
        q = p + effect * p / p[gated].mean()
    return {c.id: float(v) for c, v in zip(night.cases, np.clip(q, 0.0, 1.0), strict=True)}


def results_for(
    arm: str, cases: list[Case], probability: dict[str, float], rng: np.random.Generator, first: int = 0, count: int = LEGACY_REPEATS
) -> list[Result]:
    """Repeats ``first`` .. ``first + count - 1`` of one arm on the cases, each its own Bernoulli draw."""
    passed = (rng.random((len(cases), count)) < np.array([[probability[c.id]] for c in cases])).tolist()
    cost = (rng.uniform(0.8, 1.2, (len(cases), count)) * 6e-4).tolist()
    latency = rng.lognormal(7.0, 0.3, (len(cases), count)).tolist()
    return [
        Result(arm, c.id, first + r, passed[i][r], cost[i][r], latency[i][r])
        for i, c in enumerate(cases)
        for r in range(count)
    ]


def _candidate(number: int, k: int) -> Candidate:
    return Candidate(id=f"{PROMPT}-v1-n{number}k{k}", prompt_name=PROMPT, base_version=1, template=f"night {number} #{k}")


@dataclass
class Tally:
    promoted_at: int | None = None  # night index (1-based) of the first promotion
    harm_fired: int = 0
    tested: int = 0
    calls: int = 0  # agent rollouts over the run's nights (train and gated cases, baseline included)
    first_p: float = 1.0  # the first night's exact sign-flip p and effect (for the per-night bound)
    first_delta: float = 0.0


def run_new_gate(
    rng: np.random.Generator, n_gated: int, effect: float, nights: int, config: GateConfig, repeats: int = FIRST_REPEATS
) -> Tally:
    """One horizon of the new gate, with the carry-over through the real challenger module and store area."""
    tally = Tally()
    with Store(None) as store:
        for number in range(1, nights + 1):
            day = FIRST + timedelta(days=number)
            night = make_night(rng, n_gated, number)
            carried = carried_challenger(store, PROMPT, 1, day, config)
            candidates = [_candidate(number, k) for k in range(K)] + ([carried.candidate] if carried.candidate else [])
            train = [c for c in night.cases if c.split == "train"]
            gated = [c for c in night.cases if c.split == "holdout"]
            true = shifted(night, effect)
            # Train replays only choose: each candidate once per case ([replay] train_repeats), no baseline.
            results = [r for cand in candidates for r in results_for(cand.id, train, true, rng, count=TRAIN_REPEATS)]
            chosen = select_challenger(
                results, night.cases, [c.id for c in candidates], carried.prior.challenger_id, margin=config.min_effect
            )
            gate = test_in_batches(rng, night, gated, true, chosen.challenger_id, candidates, carried.prior, config, results, repeats)
            tally.calls += len(results)
            record_night(store, prompt_name=PROMPT, logical_date=day, run_id=f"run-{number}", base_version=1,
                         gate=gate, candidates=candidates, config=config)
            decision = next(d for d in gate.decisions if d.candidate_id == gate.challenger_id)
            if number == 1:
                tally.first_p, tally.first_delta = decision.p_value or 1.0, decision.delta
            tally.tested += 1
            tally.harm_fired += any(" got worse: " in r for r in decision.reasons)
            if choose_winner(gate.decisions) is not None:
                tally.promoted_at = number
                break
    return tally


def test_in_batches(rng, night, gated, true, challenger, candidates, prior, config, results, repeats):
    """The replay stage's gated phase: batches (``testing_batches``) with extra repeats, stopping once decided.

    Regression cases start with ``[replay] regression_repeats`` first repeats, the others with ``repeats``.
    """
    ids = [c.id for c in candidates]
    firsts = first_repeats(night.cases, repeats, REGRESSION_REPEATS)
    batches = testing_batches(gated, config.batch_cases if config.evidence == "nights" else 0)
    step = config.extra_step if config.evidence == "nights" else 0  # a p-value may be read once a night only
    for number, batch in enumerate(batches, 1):
        for first, group in by_first_repeats(batch, firsts):
            results += results_for(BASELINE, group, night.probability, rng, count=first)
            results += results_for(challenger, group, true, rng, count=first)
        gate = gate_night(results, night.cases, ids, config, prior=prior, repeats=firsts)
        wanted = set(cases_worth_more_repeats(results, [c.id for c in batch], challenger, firsts)) if config.extra_repeats else set()
        for pairs in extra_steps([c for c in batch if c.id in wanted], firsts, config.extra_repeats, step):  # a few at a time
            if _verdict_of(gate) in ("promote", "reject"):
                break
            for group, first, count in pairs:
                results += results_for(BASELINE, group, night.probability, rng, first, count)
                results += results_for(challenger, group, true, rng, first, count)
            gate = gate_night(results, night.cases, ids, config, prior=prior, repeats=firsts)
        if number == len(batches) or _verdict_of(gate) in ("promote", "reject"):
            return gate
    return gate_night(results, night.cases, ids, config, prior=prior, repeats=firsts)


def _verdict_of(gate) -> str:
    return next(d.verdict for d in gate.decisions if d.candidate_id == gate.challenger_id)


def run_legacy_gate(rng: np.random.Generator, n_gated: int, effect: float, nights: int) -> Tally:
    """One horizon of today's gate: every candidate on every gated case, Holm over K, the per-case veto."""
    tally = Tally()
    config = GateConfig(test="mcnemar")  # the fields today's gate reads (alpha, min_effect, tolerances)
    for number in range(1, nights + 1):
        night = make_night(rng, n_gated, number)
        gated = [c for c in night.cases if c.split == "holdout"]
        true = shifted(night, effect)
        ids = [f"n{number}k{k}" for k in range(K)]
        results = results_for(BASELINE, gated, night.probability, rng)
        for cid in ids:
            results += results_for(cid, gated, true, rng)
        tally.calls += len(results) + (K + 1) * (len(night.cases) - len(gated)) * LEGACY_REPEATS  # and on train cases
        decisions = legacy_gate.decide(results, gated, ids, config, test=legacy_gate.McNemarTest())
        tally.tested += 1
        if legacy_gate.choose_winner(decisions) is not None:
            tally.promoted_at = number
            break
    return tally


GATES = {
    "new gate (evidence across nights)": lambda rng, n, e, h: run_new_gate(rng, n, e, h, GateConfig()),
    "  every gated case at once": lambda rng, n, e, h: run_new_gate(rng, n, e, h, GateConfig(batch_cases=0)),
    "  extra repeats all at once": lambda rng, n, e, h: run_new_gate(rng, n, e, h, GateConfig(extra_step=0)),
    "  3 first repeats on holdout cases": lambda rng, n, e, h: run_new_gate(rng, n, e, h, GateConfig(), repeats=3),
    "  3 first repeats, no extra repeats": lambda rng, n, e, h: run_new_gate(rng, n, e, h, GateConfig(extra_repeats=0), repeats=3),
    "new gate, each night alone": lambda rng, n, e, h: run_new_gate(rng, n, e, h, GateConfig(evidence="night")),
    "today's gate": lambda rng, n, e, h: run_legacy_gate(rng, n, e, h),
}
WORLDS = {"null": (0.0, HORIZON), "-5": (-0.05, HORIZON), "+10": (0.10, POWER_NIGHTS)}


def run_job(job: tuple[int, str, str, int, np.random.SeedSequence]) -> tuple[int, str, str, list[Tally]]:
    """``runs`` horizons of one gate in one world (one process's share of the work)."""
    n_gated, gate, world, runs, seed = job
    rng = np.random.default_rng(seed)
    effect, nights = WORLDS[world]
    return n_gated, gate, world, [GATES[gate](rng, n_gated, effect, nights) for _ in range(runs)]


def summarise(tallies: dict[str, list[Tally]]) -> dict[str, float]:
    def share(runs: list[Tally], within: int) -> float:
        return sum(t.promoted_at is not None and t.promoted_at <= within for t in runs) / len(runs)

    def fired(runs: list[Tally]) -> float:
        tested = sum(t.tested for t in runs)
        return sum(t.harm_fired for t in runs) / tested if tested else 0.0

    def per_night(runs: list[Tally]) -> float:
        return sum(t.calls for t in runs) / max(1, sum(t.tested for t in runs))

    plus = tallies["+10"]
    config = GateConfig()
    return {
        "calls_per_night": per_night(tallies["null"]),
        "calls_per_night_plus": per_night(tallies["+10"]),
        "evenly_spent_bound_1": sum(t.first_p < config.alpha / HORIZON and t.first_delta >= config.min_effect for t in plus) / len(plus),
        "false_promotion_30": share(tallies["null"], HORIZON),
        "worse_adopted_30": share(tallies["-5"], HORIZON),
        "power_1": share(tallies["+10"], 1),
        "power_3": share(tallies["+10"], POWER_NIGHTS),
        "harm_fires_null": fired(tallies["null"]),
        "harm_fires_-5": fired(tallies["-5"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="Horizons per world and gate (default 60).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the numpy seed sequence (default 0).")
    parser.add_argument("--cases", type=int, nargs="+", default=[45, 100], help="Gated cases per night (default 45 100).")
    parser.add_argument("--workers", type=int, default=2, help="Processes (default 2).")
    parser.add_argument("--gates", nargs="+", default=None, help="Only the gates whose row name contains one of these words.")
    args = parser.parse_args()
    started = time.perf_counter()
    chunks = 4  # per (cases, gate, world), so that both processes stay busy
    if args.gates:
        for name in [g for g in GATES if not any(word in g for word in args.gates)]:
            del GATES[name]
    keys = [(n, gate, world) for n in args.cases for gate in GATES for world in WORLDS]
    seeds = np.random.SeedSequence(args.seed).spawn(len(keys) * chunks)
    jobs = [
        (n, gate, world, len(range(c, args.runs, chunks)), seeds[i * chunks + c])
        for i, (n, gate, world) in enumerate(keys)
        for c in range(chunks)
    ]
    tallies: dict[tuple[int, str], dict[str, list[Tally]]] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for n, gate, world, runs in pool.map(run_job, jobs):
            tallies.setdefault((n, gate), {}).setdefault(world, []).extend(runs)
    headline = {}
    for n_gated in args.cases:
        print(
            f"== {n_gated} gated cases, K={K} candidates a night, {args.runs} runs per world: the new gate {FIRST_REPEATS} first "
            f"repeat(s) + up to {GateConfig().extra_repeats} extra where one failed, today's gate {LEGACY_REPEATS} repeats"
        )
        for name in GATES:
            figures = summarise(tallies[n_gated, name])
            print(
                f"  {name:<34} false promotion over {HORIZON} null nights {figures['false_promotion_30']:.3f} | "
                f"-5 adopted over {HORIZON} nights {figures['worse_adopted_30']:.3f} | "
                f"+10 promoted within 1 night {figures['power_1']:.3f}, within {POWER_NIGHTS} {figures['power_3']:.3f} | "
                f"rollouts a night: null {figures['calls_per_night']:.0f}, +10 {figures['calls_per_night_plus']:.0f}"
                + (f" | harm fires: null {figures['harm_fires_null']:.3f}, -5 {figures['harm_fires_-5']:.3f}" if "today" not in name else "")
            )
            if name.startswith("new gate (evidence"):
                headline[n_gated] = figures
        if (n_gated, "  3 first repeats, no extra repeats") not in tallies:
            continue
        bound = summarise(tallies[n_gated, "  3 first repeats, no extra repeats"])["evenly_spent_bound_1"]
        print(
            f"  the limit of 3 repeats alone: a gate that spends its alpha evenly over {HORIZON} nights has "
            f"{GateConfig().alpha / HORIZON:.5f} a night; the exact sign-flip test at that level promotes +10 within 1 night "
            f"{bound:.3f} (the e-process, which needs no horizon, does about as well); only more evidence a night, "
            f"the extra repeats on the cases an arm failed, lifts one night above it"
        )
    print(f"config={GateConfig().model_dump()} seed={args.seed} ({time.perf_counter() - started:.0f} s)")
    print(" ".join(
        f"cases={n}: fp30={f['false_promotion_30']:.3f} worse30={f['worse_adopted_30']:.3f} "
        f"power1={f['power_1']:.3f} power3={f['power_3']:.3f}"
        for n, f in headline.items()
    ))


if __name__ == "__main__":
    main()
