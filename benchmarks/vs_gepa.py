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

Model calls are counted at the clients (agent steps, scorer calls, judge calls, guard calls: the guard checks
every proposal of either optimizer, as the judge stage does at nightloop's defaults); GEPA's cache is off,
nightloop's is on as a user gets it (a repeated request costs nothing). True success is
the share of 400 fresh simulated conversations (fixed per seed) whose first answer gets every behaviour the
request needs right; it is the oracle, never shown to either optimizer, and costs no counted call.

A shipped prompt is *truly worse* when its true success is below the prompt it replaces (GEPA: below the
seed prompt at the end of the run), *5 points worse* when by at least 0.05.

Run: .venv/bin/python benchmarks/vs_gepa.py [--seeds 10] [--calls 2500] [--nights 8]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from nightloop import pipeline
from nightloop.classify import classify_many
from nightloop.config import ClassifyConfig, JudgeConfig, ReplayConfig, RoleConfig, Settings, load_settings
from nightloop.gate import is_gated, is_train
from nightloop.ingest import ingest
from nightloop.llm.budget import BudgetLedger
from nightloop.llm.client import Clients, LLMClient, build_clients
from nightloop.llm.sim import SimProvider
from nightloop.models import PromptVersion, ReplayCase, sha256_text
from nightloop.prompt_files import import_prompts
from nightloop.replay_cases import build_replay_set
from nightloop.review import approve
from nightloop.search_world import NightSearchWorld
from nightloop.simulate import simulate_from_store, simulate_night
from nightloop.store import Store

PROMPT = "support_agent"
FIRST = date(2026, 11, 1)
TARGET = 0.60
PER_NIGHT = 100
ORACLE_SIZE = 400
VERBOSE = False
NOISE = "shared"
#: nightloop's model calls per stage (replay phases apart), summed over every night and seed of a row.
SPLIT: dict[str, int] = {}
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Counter:
    """GEPA's side of the four roles' clients; ``calls`` is every model call made so far.

    The guard checks every proposal, as in nightloop's judge stage (its ``[llm.guard]`` default): both optimizers
    pay for the same candidate checks.
    """

    agent: LLMClient
    scorer: LLMClient
    judge: LLMClient
    guard: LLMClient

    @classmethod
    def fresh(cls, seed: int, cache: object) -> Counter:
        """One client per role, each with a provider of its own (with independent noise the agent's seed changes call by call).

        ``cache`` is the response cache nightloop's clients have at its defaults (``[llm] cache = true``): a request
        made before is answered from it and costs no call, for GEPA as for nightloop.
        """
        return cls(*(
            LLMClient(SimProvider(seed=seed), RoleConfig(provider="sim", model=f"sim-{role}"), cache=cache)
            for role in ("agent", "scorer", "judge", "guard")
        ))

    @property
    def calls(self) -> int:
        return self.agent.calls + self.scorer.calls + self.judge.calls + self.guard.calls


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


def reset_draws(seed: int, optimizer: str) -> None:
    """Each (seed, optimizer) run draws its independent noise from seeds of its own, whatever ran before it."""
    global _FRESH
    _FRESH = itertools.count(10**9 * (1 + 2 * seed + (optimizer == "gepa")))


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
        judge_options={"guard": clients.guard, "guard_model": clients.guard.role.model},
    )
    return Night(cases, world)


# --- nightloop ---


class IndependentSim(SimProvider):
    """The sim agent with independent noise: every call draws its luck from a seed no other call used."""

    def _seed(self, request):
        return f"{next(_FRESH)}:{request.seed}"


def product_settings(work: Path, seed: int) -> Settings:
    """What a user gets: config.py's defaults (an empty nightloop.toml), the store in ``work``, the seed."""
    config = work / "nightloop.toml"
    config.write_text("", encoding="utf-8")
    return load_settings(config, db=work / "nightloop.db", seed=seed)


def product_clients(settings: Settings, store: Store) -> Clients:
    clients = build_clients(settings, cache=store.cache if settings.llm.cache else None, ledger=BudgetLedger.from_settings(settings))
    if NOISE == "independent":
        clients.agent.provider = IndependentSim(seed=settings.seed)
    return clients


@dataclass
class Phases:
    """Model calls per stage (and per replay phase), from the night's progress messages."""

    clients: Clients
    spent: dict[str, int] = field(default_factory=dict)
    current: str = "start"
    mark: int = 0

    def progress(self, stage: str, message: str) -> None:
        name = f"replay {message.split(':')[0]}" if stage == "replay" and ":" in message else stage
        self._close()
        self.current = name

    def _close(self) -> None:
        now = self.clients.calls
        self.spent[self.current] = self.spent.get(self.current, 0) + now - self.mark
        self.mark = now

    def line(self) -> str:
        self._close()
        return ", ".join(f"{name} {calls}" for name, calls in self.spent.items() if calls)


def nightloop_night(store: Store, settings: Settings, clients: Clients, number: int, seed: int, work: Path) -> str | None:
    """One night of the product (``pipeline.run_night`` at the defaults) on fresh traffic; the promoted template, or None."""
    day = FIRST + timedelta(days=number)
    files = simulate_from_store(store, PROMPT, nights=1, per_night=PER_NIGHT, seed=seed * 1000 + number, out=work / "logs", start_date=day)
    ingest(store, [str(f) for f in files], classify_config=settings.classify)
    phases = Phases(clients, mark=clients.calls)
    report = pipeline.run_night(settings, PROMPT, day + timedelta(days=1), store=store, clients=clients, progress=phases.progress)
    if VERBOSE:
        verdicts = "; ".join(f"{d.verdict} ({d.n_cases} cases, {d.delta:+.2f})" for d in report.decisions if d.n_cases)
        print(f"  night {number}: {report.status}, calls {phases.line()}; {verdicts or 'nothing tested'}")
    for stage, calls in phases.spent.items():
        SPLIT[stage] = SPLIT.get(stage, 0) + calls
    if not report.review_id:
        return None
    # The reviewer approves the gate's winner (the demo does the same, and says so).
    version = approve(store, report.review_id, reviewer="vs_gepa", comment="approved by the benchmark").version
    return store.prompts.get(PROMPT, version).template


def run_nightloop(seed: int, max_calls: int, nights: int, oracle: Oracle, base: str) -> Run:
    reset_draws(seed, "nightloop")
    run = Run(trace=[(0, oracle(base))])
    template = base
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        settings = product_settings(work, seed)
        with Store(settings.db) as store:
            import_prompts(store, ROOT / "prompts", created_by="vs_gepa")
            clients = product_clients(settings, store)
            for number in range(1, nights + 1):
                promoted = nightloop_night(store, settings, clients, number, seed, work)
                if promoted is not None:
                    run.shipped.append((oracle(template), oracle(promoted)))
                    template = promoted
                run.trace.append((clients.calls, oracle(template)))
                if clients.calls >= max_calls:
                    break
            run.calls = clients.calls
    return run


# --- GEPA ---


def run_gepa(seed: int, max_calls: int, oracle: Oracle, base: str) -> Run:
    reset_draws(seed, "gepa")
    with Store(None) as cache_store:
        return _gepa(seed, max_calls, oracle, base, Counter.fresh(seed, cache_store.cache))


def _gepa(seed: int, max_calls: int, oracle: Oracle, base: str, clients: Counter) -> Run:
    import gepa  # the bench extra
    from gepa_adapter import NightloopAdapter  # noqa: PLC0415  (next to this script)

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
    print(f"{'':<22} per seed: {', '.join(str(c) if c is not None else 'never' for c in reached)}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2500, help="model calls each optimizer may spend per seed")
    parser.add_argument("--nights", type=int, default=8, help="nightloop's nights at most per seed")
    parser.add_argument("--only", choices=("nightloop", "gepa"), default=None)
    parser.add_argument(
        "--noise", choices=("shared", "independent"), default="shared",
        help="shared: the simulator as shipped (one draw per case and repeat, both arms); independent: every call its own draw",
    )
    parser.add_argument("--verbose", action="store_true", help="one line per night (nightloop)")
    args = parser.parse_args()
    global VERBOSE, NOISE
    VERBOSE, NOISE = args.verbose, args.noise
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
    print(f"noise: {NOISE}; nightloop at config.py's defaults (pipeline.run_night, an empty nightloop.toml)")
    print(f"baseline true success: {statistics.fmean(oracles[s](base) for s in oracles):.3f} (mean over {args.seeds} seeds)")
    if args.only != "gepa":
        runs = [run_nightloop(seed, args.calls, args.nights, oracles[seed], base) for seed in range(args.seeds)]
        rows["nightloop"] = summarise("nightloop (defaults)", runs, args.calls)
        total = sum(SPLIT.values())
        print("nightloop's calls by stage (all seeds and nights): " + ", ".join(
            f"{name} {calls} ({calls / total:.0%})" for name, calls in sorted(SPLIT.items(), key=lambda kv: -kv[1]) if calls))
    if args.only != "nightloop":
        runs = [run_gepa(seed, args.calls, oracles[seed], base) for seed in range(args.seeds)]
        rows["gepa"] = summarise("GEPA", runs, args.calls)
    if "nightloop" in rows and "gepa" in rows:
        ratio = rows["nightloop"]["median"] / rows["gepa"]["median"]
        print(f"ratio nightloop / GEPA (median calls to {TARGET:.0%}): {ratio:.2f}x   (target <= 1.0x with 0 worse promotions)")
    print(f"wall {time.perf_counter() - started:.0f} s, CPU {time.process_time() - cpu:.0f} s")


if __name__ == "__main__":
    main()
