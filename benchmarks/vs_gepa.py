"""nightloop against GEPA in the same simulated world: model calls to reach 60 % true success, and worse prompts shipped.

The world is nightloop's offline simulator: customers and the support agent (``llm/sim``), the classifier,
the replay cases nightloop builds from a night's conversations, the sim scorers and the sim judge. Both
optimizers face exactly the same proposals and the same measurements:

- **GEPA** (the real library, ``pip install -e '.[bench]'``) runs ``gepa.optimize`` on one night's 100
  conversations: train set = the night's train cases, validation set = its gated cases (holdout failures and
  regression cases). Its adapter's task model is the sim agent and its metric our scorers (through
  ``run_replay``, one rollout per case); its proposer is our judge stage (``judge.propose``, one revision per
  call) fed the failures GEPA's reflective dataset holds. GEPA's best candidate (by validation mean) is what it
  would ship.
- **nightloop** runs nights on fresh traffic (100 conversations each, produced by the production prompt):
  classify, build the replay set, replay production on every case, one judge call for ``[judge] candidates``,
  the reflective search (``nightloop.search``, ``[search]`` defaults), then the gate on the gated cases with
  the challenger carried across nights (``nightloop.challenger``). A promotion changes the production prompt
  for the next night's traffic.

Model calls are counted at the clients (agent steps, scorer calls, judge calls), cache off. True success is
the share of 400 fresh simulated conversations (fixed per seed) whose first answer gets every behaviour the
request needs right; it is the oracle, never shown to either optimizer, and costs no counted call.

A shipped prompt is *truly worse* when its true success is below the prompt it replaces (GEPA: below the
seed prompt at the end of the run), *5 points worse* when by at least 0.05.

Run: .venv/bin/python benchmarks/vs_gepa.py [--seeds 10] [--calls 2500] [--nights 8]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from nightloop.challenger import carried_challenger, record_night
from nightloop.classify import classify_many
from nightloop.config import ClassifyConfig, GateConfig, JudgeConfig, ReplayConfig, RoleConfig, SearchConfig
from nightloop.gate import choose_winner, gate_night, is_gated, is_train
from nightloop.judge import propose
from nightloop.llm.client import LLMClient
from nightloop.llm.sim import SimProvider
from nightloop.models import BASELINE, PromptVersion, ReplayCase, sha256_text
from nightloop.replay import run_replay
from nightloop.replay_cases import build_replay_set
from nightloop.search import reflective_search
from nightloop.search_world import NightSearchWorld
from nightloop.simulate import simulate_night
from nightloop.store import Store

PROMPT = "support_agent"
FIRST = date(2026, 11, 1)
TARGET = 0.60
PER_NIGHT = 100
ORACLE_SIZE = 400
VERBOSE = False
NOISE = "shared"
SEARCH = SearchConfig()
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Counter:
    """The three roles' clients; ``calls`` is every model call made so far."""

    agent: LLMClient
    scorer: LLMClient
    judge: LLMClient

    @classmethod
    def fresh(cls, seed: int) -> Counter:
        # The agent has a provider of its own: with independent noise its seed changes call by call.
        return cls(*(LLMClient(SimProvider(seed=seed), RoleConfig(provider="sim", model=f"sim-{role}")) for role in ("agent", "scorer", "judge")))

    @property
    def calls(self) -> int:
        return self.agent.calls + self.scorer.calls + self.judge.calls


@dataclass
class Run:
    """One optimizer on one seed: (calls, true success of what it would ship) after each change, and its promotions."""

    trace: list[tuple[int, float]] = field(default_factory=list)
    shipped: list[tuple[float, float]] = field(default_factory=list)  # (true before, true after) per promotion
    calls: int = 0

    def calls_to(self, target: float) -> int | None:
        return next((calls for calls, true in self.trace if true >= target), None)

    def true_after(self, calls: int) -> float:
        return max((true for c, true in self.trace if c <= calls), default=self.trace[0][1])

    def worse(self, by: float = 0.0) -> bool:
        return any(after < before - by for before, after in self.shipped) if by else any(a < b for b, a in self.shipped)


class Oracle:
    """True success of a template on fixed fresh traffic (not counted: the benchmark's ground truth)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._known: dict[str, float] = {}

    def __call__(self, template: str) -> float:
        key = sha256_text(template)
        if key not in self._known:
            conversations = simulate_night(
                template=template, prompt_name=PROMPT, prompt_version=None, day=date(2030, 1, 1),
                per_night=ORACLE_SIZE, seed=10_000 + self.seed,
            )
            self._known[key] = sum(not c.metadata["sim_failed"] for c in conversations) / len(conversations)
        return self._known[key]


def production_version(template: str, version: int) -> PromptVersion:
    return PromptVersion(name=PROMPT, version=version, template=template, sha256=sha256_text(template), created_at=FIRST)


_FRESH = itertools.count(1_000_000)


def fresh_draws(agent: LLMClient) -> None:
    """With independent noise, the sim agent's next replay call draws its luck from a seed no other call used."""
    if NOISE == "independent":
        agent.provider.seed = next(_FRESH)


class BenchWorld(NightSearchWorld):
    async def replay(self, templates, cases):
        fresh_draws(self.agent)
        return await super().replay(templates, cases)


@dataclass
class Night:
    cases: list[ReplayCase]
    world: NightSearchWorld


def night_world(template: str, version: int, day: date, seed: int, clients: Counter) -> Night:
    """One night's traffic under ``template``, its failures and replay cases, and the search world over them."""
    conversations = simulate_night(template=template, prompt_name=PROMPT, prompt_version=version, day=day, per_night=PER_NIGHT, seed=seed)
    found = classify_many(conversations, ClassifyConfig())
    failures = [f for fs in found.values() for f in fs]
    failed = {c.id: c for c in conversations if found[c.id]}
    succeeded = [c for c in conversations if not found[c.id]]
    cases = build_replay_set(PROMPT, failures=failures, failed=failed, succeeded=succeeded, config=ReplayConfig(), seed=seed)
    world = BenchWorld(
        judge=clients.judge, agent=clients.agent, production=production_version(template, version), failures=failures,
        conversations={c.id: c for c in conversations}, judge_config=JudgeConfig(), candidates=1, repeats=1,
        replay_options={"concurrency": 8, "scorer_client": clients.scorer, "seed": seed},
    )
    return Night(cases, world)


# --- nightloop ---


async def nightloop_night(
    template: str, version: int, number: int, seed: int, clients: Counter, store: Store, repeats: int
) -> str | None:
    """One night of nightloop; the promoted template, or None."""
    day = FIRST + timedelta(days=number)
    night = night_world(template, version, day, seed * 1000 + number, clients)
    train = [c for c in night.cases if is_train(c)]
    gated = [c for c in night.cases if is_gated(c)]
    if not train:
        return None
    options = {"concurrency": 8, "scorer_client": clients.scorer, "seed": seed * 1000 + number}
    phases = [("start", clients.calls)]
    fresh_draws(clients.agent)
    results = list((await run_replay(clients.agent, gated, {BASELINE: template}, repeats=repeats, **options)).results)
    phases.append(("baseline", clients.calls))
    config = GateConfig()
    carried = carried_challenger(store, PROMPT, version, day, config)
    judged = await propose(
        clients.judge, prompt_name=PROMPT, base=night.world.production, failures=list(night.world.failures.values()),
        conversations=night.world.conversations, config=JudgeConfig(), seed=number,
    )
    search = SEARCH
    night.world.judge_config = night.world.judge_config.model_copy(update={"candidates": search.candidates})
    night.world.repeats = search.repeats
    # The search replays production and the first call's candidates on the train cases, then runs its rounds.
    found = await reflective_search(
        night.world, base_template=template, train=train, results=results, config=search, seed=number, seeds=judged.candidates
    )
    results += found.results
    phases.append(("search", clients.calls))
    candidates = ([found.challenger] if found.challenger else []) + ([carried.candidate] if carried.candidate else [])
    if not candidates:
        return None
    if carried.candidate:
        held = {carried.candidate.id: carried.candidate.template}
        fresh_draws(clients.agent)
        results += (await run_replay(clients.agent, train, held, repeats=search.repeats, **options)).results
    chosen = gate_night(results, night.cases, [c.id for c in candidates], config, prior=carried.prior).challenger_id
    chosen_template = next(c.template for c in candidates if c.id == chosen)
    fresh_draws(clients.agent)
    results += (await run_replay(clients.agent, gated, {chosen: chosen_template}, repeats=repeats, **options)).results
    gate = gate_night(results, night.cases, [c.id for c in candidates], config, prior=carried.prior)
    record_night(store, prompt_name=PROMPT, logical_date=day, run_id=f"run-{number}", base_version=version,
                 gate=gate, candidates=candidates, config=config)
    winner = choose_winner(gate.decisions)
    phases.append(("gate", clients.calls))
    if VERBOSE:
        spent = ", ".join(f"{name} {b - a}" for (_, a), (name, b) in zip(phases, phases[1:]))
        verdict = next(d for d in gate.decisions if d.candidate_id == gate.challenger_id)
        print(f"  night {number}: {len(train)} train / {len(gated)} gated cases; calls {spent}; "
              f"{len(found.candidates)} kept in {len(found.rounds)} rounds; {verdict.verdict}: {verdict.reasons[:1]}")
    return next(c.template for c in candidates if c.id == winner.candidate_id) if winner else None


async def run_nightloop(seed: int, max_calls: int, nights: int, oracle: Oracle, base: str, repeats: int) -> Run:
    clients = Counter.fresh(seed)
    run = Run(trace=[(0, oracle(base))])
    template, version = base, 1
    with Store(None) as store:
        for number in range(1, nights + 1):
            promoted = await nightloop_night(template, version, number, seed, clients, store, repeats)
            if promoted is not None:
                run.shipped.append((oracle(template), oracle(promoted)))
                template, version = promoted, version + 1
            run.trace.append((clients.calls, oracle(template)))
            if clients.calls >= max_calls:
                break
    run.calls = clients.calls
    return run


# --- GEPA ---


def run_gepa(seed: int, max_calls: int, oracle: Oracle, base: str) -> Run:
    import gepa  # the bench extra

    from gepa_adapter import NightloopAdapter  # noqa: PLC0415  (next to this script)

    clients = Counter.fresh(seed)
    night = night_world(base, 1, FIRST + timedelta(days=1), seed * 1000 + 1, clients)
    train = [c for c in night.cases if is_train(c)]
    val = [c for c in night.cases if is_gated(c)]
    adapter = NightloopAdapter(night.world, clients, oracle, val)
    run = Run(trace=[(0, oracle(base))])
    adapter.run = run
    result = gepa.optimize(
        seed_candidate={"system_prompt": base}, trainset=train, valset=val, adapter=adapter,
        reflection_minibatch_size=3, max_metric_calls=max_calls, seed=seed, display_progress_bar=False,
        stop_callbacks=[lambda state: clients.calls >= max_calls], raise_on_exception=True, logger=_Quiet(),
    )
    best = result.best_candidate["system_prompt"]
    run.shipped.append((oracle(base), oracle(best)))
    run.calls = clients.calls
    return run


class _Quiet:
    def log(self, message: str) -> None:
        pass


def summarise(name: str, runs: list[Run], budget: int) -> dict[str, object]:
    reached = [r.calls_to(TARGET) for r in runs]
    hits = sorted(c for c in reached if c is not None)
    median = statistics.median(c if c is not None else float("inf") for c in reached)
    row = {
        "name": name,
        "median": median,
        "reached": len(hits),
        "after": statistics.fmean(r.true_after(budget) for r in runs),
        "worse": sum(r.worse() for r in runs),
        "worse5": sum(r.worse(0.05) for r in runs),
    }
    print(
        f"{name:<22} median calls to {TARGET:.0%}: {median:>8} ({len(hits)}/{len(runs)} seeds reach it)   "
        f"true success after {budget} calls: {row['after']:.3f}   truly worse shipped: {row['worse']}/{len(runs)} "
        f"(5 points worse: {row['worse5']})"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2500, help="model calls each optimizer may spend per seed")
    parser.add_argument("--nights", type=int, default=8, help="nightloop's nights at most per seed")
    parser.add_argument("--only", choices=("nightloop", "gepa"), default=None)
    parser.add_argument("--repeats", type=int, nargs="+", default=[3, 1], help="nightloop's [replay] repeats (gated cases)")
    parser.add_argument("--rounds", type=int, default=4, help="[search] rounds")
    parser.add_argument("--minibatch", type=int, default=SearchConfig().minibatch, help="[search] minibatch")
    parser.add_argument(
        "--noise", choices=("shared", "independent"), default="shared",
        help="shared: the simulator as shipped (one draw per case and repeat, both arms); independent: every rollout its own draw",
    )
    parser.add_argument("--verbose", action="store_true", help="one line per night (nightloop)")
    args = parser.parse_args()
    global VERBOSE, SEARCH, NOISE
    VERBOSE, NOISE = args.verbose, args.noise
    SEARCH = SearchConfig(rounds=args.rounds, minibatch=args.minibatch)
    base = (ROOT / "prompts" / "support_agent.j2").read_text(encoding="utf-8")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.only != "nightloop":
        try:
            import gepa  # noqa: F401
        except ImportError:
            sys.exit("GEPA is not installed: .venv/bin/pip install -e '.[bench]'")
    started, cpu = time.perf_counter(), time.process_time()
    rows = {}
    oracles = {seed: Oracle(seed) for seed in range(args.seeds)}
    print(f"noise: {NOISE}; search: {SEARCH}")
    print(f"baseline true success: {statistics.fmean(oracles[s](base) for s in oracles):.3f} (mean over {args.seeds} seeds)")
    if args.only != "gepa":
        for repeats in args.repeats:
            runs = [asyncio.run(run_nightloop(seed, args.calls, args.nights, oracles[seed], base, repeats)) for seed in range(args.seeds)]
            rows[f"nightloop, repeats={repeats}"] = summarise(f"nightloop, repeats={repeats}", runs, args.calls)
    if args.only != "nightloop":
        runs = [run_gepa(seed, args.calls, oracles[seed], base) for seed in range(args.seeds)]
        rows["gepa"] = summarise("GEPA", runs, args.calls)
    for name, row in rows.items():
        if name != "gepa" and "gepa" in rows:
            ratio = row["median"] / rows["gepa"]["median"]
            print(f"ratio {name} / GEPA (median calls to {TARGET:.0%}): {ratio:.2f}x   (target <= 1.0x with 0 worse promotions)")
    print(f"wall {time.perf_counter() - started:.0f} s, CPU {time.process_time() - cpu:.0f} s")


if __name__ == "__main__":
    main()
