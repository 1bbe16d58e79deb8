"""The night: the stages composed in order, in plain Python (no Prefect needed).

``run_night(settings, prompt_name, logical_date)`` is the whole product in one
call. Each stage's output is persisted under the run id (prompt + logical date
+ config hash), so an interrupted night resumes where it stopped, replay
resumes per (candidate, case, repeat), and a finished night is not redone
unless forced. The Prefect flow in ``flows/nightly.py`` calls the same stage
functions one task each.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from nightloop.classify import classify_many
from nightloop.config import Settings
from nightloop.errors import BudgetExceeded, ConfigError, NightInterrupted, NightloopError, ProviderError, StoreFull
from nightloop.evidence import UNFINISHED_STATES, faulted, incomplete_arms, night_status_for
from nightloop.evidence import summary as evidence_summary
from nightloop.models import (
    BASELINE,
    Candidate,
    Conversation,
    Failure,
    INFRASTRUCTURE_KINDS,
    GateDecision,
    JudgeResult,
    NightReport,
    ReplayCase,
    Reproduction,
    ReviewItem,
)
from nightloop.simulated import refuse_sim_agent_on_real_conversations, simulated_roles
from nightloop.stopping import requested_stop
from nightloop.store import Store
from nightloop.store.db import is_disk_full, store_full

__all__ = [
    "STAGES",
    "Night",
    "run_id_for",
    "run_night",
    "run_nights",
    "stage_classify",
    "stage_gate",
    "stage_ingest",
    "stage_judge",
    "stage_replay",
    "stage_replay_set",
    "stage_review",
    "stage_watch",
]

WATCH = "nightloop watch"
STAGES = ("ingest", "classify", "watch", "replay_set", "judge", "replay", "gate", "review")
ProgressFn = Callable[[str, str], None]
StageRunner = Callable[..., Any]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class StopNight(Exception):
    """A stage decided the night ends here (not an error): status and reason go in the report."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- stage outputs (persisted as JSON under the run id) ---


class IngestOutput(BaseModel):
    conversation_ids: list[str] = Field(default_factory=list)
    new_ids: list[str] = Field(default_factory=list)
    ingested: int = 0
    quarantined: int = 0


class ClassifyOutput(BaseModel):
    failures: list[Failure] = Field(default_factory=list)
    failed_ids: list[str] = Field(default_factory=list)
    new_failures: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict)


class WatchOutput(BaseModel):
    checked_version: int | None = None
    rolled_back_to: int | None = None
    reasons: list[str] = Field(default_factory=list)


class ReplaySetOutput(BaseModel):
    hash: str
    base_version: int
    cases: list[ReplayCase]
    train_failure_ids: list[str]
    notes: list[str] = Field(default_factory=list)


class ReplayOutput(BaseModel):
    results: int
    budget_exhausted: bool = False
    errors: int = 0
    #: Evaluations planned, and those a provider fault still spoils (nightloop.evidence decides the status).
    planned: int = 0
    faulted: int = 0
    note: str = ""
    unrecorded_tool_calls: int = 0


class GateOutput(BaseModel):
    decisions: list[GateDecision] = Field(default_factory=list)
    winner: str | None = None
    notes: list[str] = Field(default_factory=list)
    #: The challenger carried from an earlier night and tested again tonight (not among tonight's candidates).
    held: Candidate | None = None
    reproduction: Reproduction | None = None


class ReviewOutput(BaseModel):
    action: str
    review_id: str | None = None
    promoted_version: int | None = None


# --- the night's context ---


def run_id_for(settings: Settings, prompt_name: str, logical_date: date) -> str:
    return f"{prompt_name}:{logical_date.isoformat()}:{settings.config_hash()}"


@dataclass
class Night:
    """One prompt's night: where stages read and write, and the shared budget ledger."""

    settings: Settings
    store: Store
    prompt_name: str
    logical_date: date
    progress: ProgressFn | None = None
    #: Set by the caller (the CLI's Ctrl-C handler) to stop the night: see :func:`run_night`.
    stop: threading.Event | None = None
    _clients: Any = field(default=None, repr=False)
    _ledger: Any = field(default=None, repr=False)
    #: Provider-wide rate limits shared with the other nights of the process (``run_nights``); None: this night's own.
    limits: Any = field(default=None, repr=False)

    @property
    def run_id(self) -> str:
        return run_id_for(self.settings, self.prompt_name, self.logical_date)

    @property
    def window_end(self) -> datetime:
        """Conversations ending before the logical date (midnight UTC) belong to this night."""
        return datetime.combine(self.logical_date, time.min, tzinfo=UTC)

    @property
    def budget_account(self) -> str | None:
        """The store ledger account this night charges: every attempt, process and config of (prompt, date).

        ``None``: a budget of this process alone (an evaluation's).
        """
        return f"{self.prompt_name}:{self.logical_date.isoformat()}"

    @property
    def ledger(self):
        if self._ledger is None:
            from nightloop.llm.budget import BudgetLedger

            budget = self.settings.budget
            # One budget per night, not per attempt or process: spend is charged to the store as it happens.
            key = self.budget_account
            account = None if key is None else self.store.spend.account(key, self.run_id)
            self._ledger = BudgetLedger(
                budget.max_usd, budget.max_tokens, self.settings.llm.prices, stop=self.stop, account=account
            )
        return self._ledger

    @property
    def clients(self):
        if self._clients is None:
            from nightloop.llm.client import build_clients

            cache = self.store.cache if self.settings.llm.cache else None
            self._clients = build_clients(self.settings, cache=cache, ledger=self.ledger, limits=self.limits)
        return self._clients

    def say(self, stage: str, message: str) -> None:
        if self.progress is not None:
            self.progress(stage, message)

    def saved(self, stage: str, model: type[M]) -> M | None:
        raw = self.store.runs.stage_output(self.run_id, stage)
        return None if raw is None else model.model_validate(raw)

    def save(self, stage: str, output: BaseModel) -> None:
        self.store.runs.save_stage(self.run_id, stage, output.model_dump(mode="json"))


def _run_async(night: Night, work: Awaitable[T]) -> T:
    """Run a stage's model calls on a fresh event loop, closing the SDK connection pools it opened."""

    async def run_then_close() -> T:
        task = asyncio.ensure_future(work)
        abandon = asyncio.ensure_future(_abandon_when_stopped(night.stop, task))
        try:
            return await task
        except asyncio.CancelledError:
            if abandon.done() and not abandon.cancelled() and abandon.result():
                raise NightInterrupted(f"calls still running {ABANDON_AFTER_S} s after Ctrl-C were abandoned") from None
            raise  # cancelled from outside (a second Ctrl-C): let asyncio unwind
        finally:
            abandon.cancel()
            await night.clients.aclose()

    return asyncio.run(run_then_close())


#: After a stop request, calls in flight get this long to finish before they are abandoned.
ABANDON_AFTER_S = 1.5


async def _abandon_when_stopped(stop: threading.Event | None, task: asyncio.Future[Any]) -> bool:
    """Cancel ``task`` ``ABANDON_AFTER_S`` after ``stop`` is set; True when it did."""
    if stop is None:
        return False
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await asyncio.sleep(ABANDON_AFTER_S)
    return task.cancel()


def _once(night: Night, stage: str, model: type[M], compute: Callable[[], M]) -> M:
    """Return the stage's persisted output, computing and persisting it the first time."""
    previous = night.saved(stage, model)
    if previous is not None:
        return previous
    night.say(stage, "running")
    output = compute()
    night.save(stage, output)
    return output


# --- stages ---


def stage_ingest(night: Night) -> IngestOutput:
    """Read configured sources, then take the last ``limit`` conversations ending before the logical date."""

    def compute() -> IngestOutput:
        ingested = quarantined = 0
        if night.settings.sources:
            from nightloop.ingest import ingest

            stats = ingest(night.store, list(night.settings.sources), classify_config=night.settings.classify)
            ingested, quarantined = stats.ingested, stats.quarantined
        window = night.store.conversations.recent(night.prompt_name, night.window_end, night.settings.limit)
        ids = [c.id for c in window]
        seen = night.store.runs.seen_before(night.prompt_name, night.logical_date.isoformat(), ids)
        night.store.runs.mark_seen(night.run_id, night.prompt_name, ids)
        return IngestOutput(
            conversation_ids=ids,
            new_ids=[i for i in ids if i not in seen],
            ingested=ingested,
            quarantined=quarantined,
        )

    return _once(night, "ingest", IngestOutput, compute)


def _conversations(night: Night, ids: list[str]) -> list[Conversation]:
    found = (night.store.conversations.get(i) for i in ids)
    return [c for c in found if c is not None]


def stage_classify(night: Night, ingested: IngestOutput) -> ClassifyOutput:
    """Run the failure detectors over the night's window and store what they find."""

    def compute() -> ClassifyOutput:
        by_conversation = classify_many(_conversations(night, ingested.conversation_ids), night.settings.classify)
        night.store.conversations.save_failures_many(by_conversation)
        found = [f for failures in by_conversation.values() for f in failures]
        # Provider outages are reported (by_kind) but are not the prompt's failures: never judged or replayed.
        failures = [f for f in found if f.kind not in INFRASTRUCTURE_KINDS]
        new = set(ingested.new_ids)
        failed_ids = sorted({f.conversation_id for f in found})
        return ClassifyOutput(
            failures=failures,
            failed_ids=failed_ids,
            new_failures=sum(1 for f in failures if f.conversation_id in new),
            by_kind=dict(Counter(f.kind for f in found)),
        )

    return _once(night, "classify", ClassifyOutput, compute)


def _failure_counts(night: Night, version: int) -> tuple[int, int]:
    """(failed conversations, conversations) among the latest ``[watch] window`` that ran ``version``, before the night."""
    return night.store.conversations.version_outcomes(
        night.prompt_name, version, until=night.window_end, latest=night.settings.watch.window
    )


def stage_watch(night: Night) -> WatchOutput:
    """Roll production back when its current version breaks more often than its parent did."""

    def compute() -> WatchOutput:
        from nightloop.watch import check_breakage

        prompts = night.store.prompts
        production = prompts.label_version(night.prompt_name, "production")
        if production is None:
            return WatchOutput(reasons=["no production version yet"])
        current = prompts.get(night.prompt_name, production)
        if current.parent is None:
            return WatchOutput(checked_version=production, reasons=["production has no parent to compare with"])
        moves = prompts.label_history(night.prompt_name, "production")
        if moves and moves[-1].moved_by == WATCH:
            # Production is where a rollback put it: watching it against its own parent would roll back further.
            return WatchOutput(checked_version=production, reasons=["production was set by a rollback; not re-judged"])
        verdict = check_breakage(
            _failure_counts(night, current.parent), _failure_counts(night, production), night.settings.watch
        )
        if not verdict.breakage:
            return WatchOutput(checked_version=production, reasons=verdict.reasons)
        output = WatchOutput(checked_version=production, rolled_back_to=current.parent, reasons=verdict.reasons)
        with night.store.transaction():  # the move, its record and the stage land together or not at all
            prompts.move_label(
                night.prompt_name,
                "production",
                current.parent,
                expected_version=production,
                moved_by=WATCH,
                reason="; ".join(verdict.reasons),
            )
            night.store.runs.record_rollback(night.prompt_name, production, current.parent, night.run_id, verdict.reasons)
            night.store.runs.remember_rejected(night.prompt_name, current.sha256, "watch", "; ".join(verdict.reasons))
            from nightloop.autonomy import after_breakage

            after_breakage(night.store, night.prompt_name, night.settings.autonomy, actor=WATCH,
                           reason=f"watch rolled v{production} back to v{current.parent}")
            night.save("watch", output)
        return output

    return _once(night, "watch", WatchOutput, compute)


def _production(night: Night):
    version = night.store.prompts.label_version(night.prompt_name, "production")
    if version is None:
        raise StopNight(
            "stopped_early",
            f"prompt {night.prompt_name!r} has no production version in the store; "
            "import it with `nightloop prompts import prompts/`",
        )
    return night.store.prompts.get(night.prompt_name, version)


def stage_replay_set(night: Night, ingested: IngestOutput, classified: ClassifyOutput) -> ReplaySetOutput:
    """Cases to replay: from the night's failures (train/holdout) plus regression cases that went well."""

    def compute() -> ReplaySetOutput:
        from nightloop.replay import build_replay_set, replay_set_hash, train_failure_ids

        base = _production(night)
        conversations = {c.id: c for c in _conversations(night, ingested.conversation_ids)}
        failed_ids = set(classified.failed_ids)
        cases = build_replay_set(
            night.prompt_name,
            failures=classified.failures,
            failed={i: c for i, c in conversations.items() if i in failed_ids},
            succeeded=[c for i, c in conversations.items() if i not in failed_ids],
            config=night.settings.replay,
            seed=night.settings.seed,
        )
        cases, notes = _replayable(cases, base.template)
        failing = {f.conversation_id for f in classified.failures}
        covered = {c.metadata.get("conversation_id") for c in cases if c.origin != "regression"}
        if failing - covered:
            notes.append(
                f"{len(failing - covered)} failed conversation(s) gave no replay case "
                "(no user turn before the failure, the failure-case cap, or unrenderable variables)"
            )
        return ReplaySetOutput(
            hash=replay_set_hash(cases),
            base_version=base.version,
            cases=cases,
            train_failure_ids=sorted(train_failure_ids(cases)),
            notes=notes,
        )

    from nightloop.stored_cases import stored_cases, with_content

    # Kept by reference: the cases' content (conversation turns, variables, expected answers) stays in `conversations`.
    if (previous := night.saved("replay_set", ReplaySetOutput)) is not None:
        return with_content(night.store, previous)
    night.say("replay_set", "running")
    output = compute()
    night.save("replay_set", output.model_copy(update={"cases": stored_cases(output.cases)}))
    return output


def _replayable(cases: list[ReplayCase], template: str) -> tuple[list[ReplayCase], list[str]]:
    """Keep the cases whose recorded variables render the base template (the candidates need the same ones)."""
    from nightloop.errors import TemplateError
    from nightloop.templates import render

    kept, missing = [], []
    for case in cases:
        try:
            render(template, case.variables)
        except TemplateError:
            missing.append(case.id)
        else:
            kept.append(case)
    notes = []
    if missing:
        notes.append(
            f"{len(missing)} case(s) left out: their conversations did not record the template's variables "
            f"(log `variables` with each conversation), e.g. {missing[0]}"
        )
    return kept, notes


def stage_judge(night: Night, classified: ClassifyOutput, replay_set: ReplaySetOutput) -> JudgeResult:
    """Ask the judge for K candidates addressing the train failures; invalid ones are refused with reasons."""

    def compute() -> JudgeResult:
        from nightloop.judge import propose

        base = night.store.prompts.get(night.prompt_name, replay_set.base_version)
        train_ids = set(replay_set.train_failure_ids)
        train = [f for f in classified.failures if f.id in train_ids]
        conversations = {c.id: c for c in _conversations(night, sorted({f.conversation_id for f in train}))}
        result = _run_async(
            night,
            propose(
                night.clients.judge,
                prompt_name=night.prompt_name,
                base=base,
                failures=train,
                conversations=conversations,
                config=night.settings.judge,
                rejected_hashes=night.store.runs.rejected_hashes(night.prompt_name),
                seed=night.settings.seed,
                protected=night.store.prompts.get_meta(night.prompt_name).protected,
                guard=night.clients.guard,
                guard_model=night.settings.llm.guard.model,
            )
        )
        if result.errors and not result.candidates and not result.invalid:
            # A judge fault is not a finished stage: raising lets Prefect retry and a re-run try again.
            raise ProviderError("; ".join(result.errors))
        return result

    return _once(night, "judge", JudgeResult, compute)


def stage_replay(night: Night, replay_set: ReplaySetOutput, judged: JudgeResult) -> ReplayOutput:
    """Run baseline and every candidate on every case, ``repeats`` times; each result is saved as it lands."""
    previous = night.saved("replay", ReplayOutput)
    if previous is not None:
        return previous
    from nightloop.gate import is_train, select_challenger
    from nightloop.runners import make_runner, run_closing

    base = night.store.prompts.get(night.prompt_name, replay_set.base_version)
    carried = _carried(night, replay_set)
    candidates = _night_candidates(judged, carried)
    templates = {BASELINE: base.template, **{c.id: c.template for c in candidates}}
    stored = {(r.candidate_id, r.case_id, r.repeat): r for r in night.store.runs.eval_results(night.run_id)}
    done = {key for key, result in stored.items() if not faulted(result)}  # faulted ones are tried again
    night.say("replay", f"{len(done)} evaluations already done" if done else "choosing on train cases, then testing")
    other_prompts = {n: night.store.prompts.get(n, night.store.prompts.label_version(n, "production")).template
                     for n in night.settings.replay.prompts if n != night.prompt_name}
    agent_cases = {case.id: case for case in _cases_for_the_agent(night, replay_set.cases)}
    repeats = night.settings.replay.repeats
    planned = 0

    def replay(cases: list[ReplayCase], arms: dict[str, str]):
        nonlocal planned
        planned += len(cases) * len(arms) * repeats
        return _run_async(
            night,
            run_closing(
                make_runner(night.settings.replay.runner, night.clients.agent),  # closed after each phase
                night.clients.agent,
                [agent_cases[case.id] for case in cases],
                arms,
                repeats=repeats,
                concurrency=night.settings.replay.concurrency,
                scorer_client=night.clients.scorer,
                declared_scorers=[*night.store.prompts.get_meta(night.prompt_name).scorers, *night.settings.replay.scorers],
                done=done,
                on_result=lambda result: night.store.runs.save_eval(night.run_id, result),
                seed=night.settings.seed,
                fault_retries=night.settings.replay.fault_retries,
                fault_backoff_s=night.settings.replay.fault_backoff_s,
                answer_rules=night.settings.classify,
                other_prompts=other_prompts,
            ),
        )

    # Select, then test: every candidate on the train cases, then only the chosen one (and the baseline) on the gated ones.
    train = [c for c in replay_set.cases if is_train(c)]
    phases = []
    if len(candidates) > 1 and train:
        phases.append(replay(train, {BASELINE: base.template, **{c.id: c.template for c in candidates}}))
    if not (phases and phases[0].budget_exhausted):
        results = night.store.runs.eval_results(night.run_id)
        chosen = select_challenger(
            results, replay_set.cases, [c.id for c in candidates], carried.prior.challenger_id,
            margin=night.settings.gate.min_effect,
        )
        gated = [c for c in replay_set.cases if not is_train(c)]
        phases.append(replay(gated, {k: v for k, v in templates.items() if k in (BASELINE, chosen.challenger_id)}))
    for phase in phases:
        stored.update({(r.candidate_id, r.case_id, r.repeat): r for r in phase.results})
    status, note = evidence_summary(stored.values(), planned)
    output = ReplayOutput(
        results=len(done) + sum(len(p.results) for p in phases),
        budget_exhausted=phases[-1].budget_exhausted,
        errors=sum(p.errors for p in phases),
        planned=planned,
        faulted=sum(faulted(r) for r in stored.values()),
        note=note,
        unrecorded_tool_calls=sum(p.unrecorded_tool_calls for p in phases),
    )
    # An exhausted or faulted replay stays open, so a re-run resumes it (retrying only the faulted evaluations).
    if not output.budget_exhausted and status == "done":
        night.save("replay", output)
    return output


def _cases_for_the_agent(night: Night, cases: list) -> list:
    """Replay cases as the agent may see them: redacted when its provider is on another machine."""
    from nightloop.redact import Redactor, leaves_the_machine, redact_messages

    agent = night.settings.llm.agent
    if not leaves_the_machine(agent.provider, agent.base_url):
        return cases
    redactor = Redactor()
    return [c.model_copy(update={"messages": redact_messages(c.messages, redactor)}) for c in cases]


def stage_gate(night: Night, replay_set: ReplaySetOutput, judged: JudgeResult) -> GateOutput:
    """Decide per candidate with the paired test, corrections and vetoes; pick at most one winner."""

    def compute() -> GateOutput:
        from nightloop.challenger import record_night
        from nightloop.gate import choose_winner, gate_night, get_paired_test, is_train
        from nightloop.reproduction import check_reproduction, gate_cases, mismatch_warning, summary

        results = night.store.runs.eval_results(night.run_id)
        reproduction = check_reproduction(replay_set.cases, results)  # before judging: does replay match production?
        cases = gate_cases(replay_set.cases, reproduction)
        carried = _carried(night, replay_set)
        candidates = _night_candidates(judged, carried)
        test = get_paired_test(night.settings.gate.test, random.Random(night.settings.seed))  # the night's seed
        gate = gate_night(results, cases, [c.id for c in candidates], night.settings.gate, prior=carried.prior, test=test)
        warning = mismatch_warning(reproduction, night.settings.replay.runner.name)
        for decision in gate.decisions:  # context first: the verdict stays the last reason
            decision.reasons[:0] = [summary(reproduction), *([warning] if warning else [])]
        repeats = night.settings.replay.repeats
        gated_cases = [c for c in replay_set.cases if not is_train(c)]
        gated_ids = {c.id for c in gated_cases}
        ids = [c.id for c in candidates]
        tested = [i for i in ids if any(r.candidate_id == i and r.case_id in gated_ids for r in results)]
        _name_incomplete_arms(gate.decisions, incomplete_arms(results, gated_cases, tested, repeats), repeats)
        # Gate rejections are not remembered as "rejected before": a good template rejected by chance one night
        # deserves another try. Reviewer rejections and watch rollbacks are remembered.
        winner = choose_winner(gate.decisions)
        output = GateOutput(
            decisions=gate.decisions, winner=winner.candidate_id if winner else None, notes=carried.notes,
            held=carried.candidate, reproduction=reproduction,
        )
        with night.store.transaction():  # tonight's evidence and the stage land together: a re-run never counts it twice
            record_night(
                night.store, prompt_name=night.prompt_name, logical_date=night.logical_date, run_id=night.run_id,
                base_version=replay_set.base_version, gate=gate, candidates=candidates, config=night.settings.gate,
            )
            night.save("gate", output)
        return output

    return _once(night, "gate", GateOutput, compute)


def _carried(night: Night, replay_set: ReplaySetOutput):
    """The challenger held from earlier nights on this production version, and the evidence so far."""
    from nightloop.challenger import carried_challenger

    return carried_challenger(
        night.store, night.prompt_name, replay_set.base_version, night.logical_date, night.settings.gate
    )


def _night_candidates(judged: JudgeResult, carried) -> list[Candidate]:
    """Tonight's valid candidates plus the held challenger (once, if the judge did not propose it again)."""
    held = carried.candidate
    return judged.candidates + ([held] if held is not None and all(c.id != held.id for c in judged.candidates) else [])


def _name_incomplete_arms(decisions: list[GateDecision], missing: dict[str, list[str]], repeats: int) -> None:
    """Each decision names the cases where its arms (or baseline's) have fewer results than ``repeats``."""
    for decision in decisions:
        short = [f"baseline {c}" for c in missing.get(BASELINE, [])] + missing.get(decision.candidate_id, [])
        if short:
            shown = ", ".join(short[:10]) + (f" and {len(short) - 10} more" if len(short) > 10 else "")
            decision.reasons.append(f"fewer results than repeats={repeats} for: {shown}")


def review_id_for(run_id: str, candidate: Candidate) -> str:
    return hashlib.sha256(f"{run_id}|{candidate.sha256}".encode()).hexdigest()[:10]


def stage_review(night: Night, judged: JudgeResult, gated: GateOutput) -> ReviewOutput:
    """Queue the winner for a prompt author — or, for an ``auto`` prompt with a clean record, promote it."""

    def compute() -> ReviewOutput:
        if gated.winner is None:
            return ReviewOutput(action="nothing to review: no candidate passed the gate")
        candidate = next(c for c in [*judged.candidates, gated.held] if c is not None and c.id == gated.winner)
        decision = next(d for d in gated.decisions if d.candidate_id == gated.winner)
        from nightloop.autonomy import AUTO_ACTOR, current_level

        autonomy = current_level(night.store, night.prompt_name, night.settings.autonomy)
        if autonomy == "propose":
            return ReviewOutput(action="proposed only (autonomy: propose); see the night report")
        item = ReviewItem(
            id=review_id_for(night.run_id, candidate),
            run_id=night.run_id,
            prompt_name=night.prompt_name,
            candidate=candidate,
            decision=decision,
            created_at=datetime.now(UTC),
        )
        night.store.runs.enqueue_review(item)
        queued = night.store.runs.review_item(item.id)
        if queued.status == "approved" and queued.decided_by == AUTO_ACTOR:
            # Killed after the auto-approval committed but before this stage was saved: it is done already.
            return ReviewOutput(action="promoted automatically", review_id=item.id, promoted_version=queued.promoted_version)
        if autonomy == "auto" and candidate.risks:
            return ReviewOutput(
                action=f"waiting for review: a high-risk edit is never promoted automatically ({candidate.risks[0]})",
                review_id=item.id,
            )
        if autonomy == "auto":  # earned (or allowed by a person), and lost again on a breakage: nightloop.autonomy
            from nightloop.review import approve

            version = approve(
                night.store, item.id, reviewer=AUTO_ACTOR, comment="auto-promoted", autonomy=night.settings.autonomy
            )
            return ReviewOutput(action="promoted automatically", review_id=item.id, promoted_version=version.version)
        return ReviewOutput(action="waiting for review", review_id=item.id)

    return _once(night, "review", ReviewOutput, compute)


# --- composition ---


def _report(night: Night, status: str, **parts: Any) -> NightReport:
    ingested: IngestOutput | None = parts.get("ingested")
    classified: ClassifyOutput | None = parts.get("classified")
    judged: JudgeResult | None = parts.get("judged")
    gated: GateOutput | None = parts.get("gated")
    reviewed: ReviewOutput | None = parts.get("reviewed")
    replayed: ReplayOutput | None = parts.get("replayed")
    conversations = len(ingested.conversation_ids) if ingested else 0
    production = night.store.prompts.label_version(night.prompt_name, "production")
    ledger = night.ledger
    return NightReport(
        run_id=night.run_id,
        prompt_name=night.prompt_name,
        date=night.logical_date,
        status=status,
        conversations=conversations,
        new_conversations=len(ingested.new_ids) if ingested else 0,
        quarantined=ingested.quarantined if ingested else 0,
        failures=classified.by_kind if classified else {},
        failure_rate=(len(classified.failed_ids) / conversations) if classified and conversations else 0.0,
        prompt_version=production,
        candidates=len(judged.candidates) if judged else 0,
        invalid_candidates=len(judged.invalid) if judged else 0,
        decisions=gated.decisions if gated else [],
        review_id=reviewed.review_id if reviewed else None,
        promoted_version=reviewed.promoted_version if reviewed else None,
        tokens=ledger.tokens if ledger else 0,
        cost_usd=ledger.spent_usd if ledger else 0.0,
        evaluations=replayed.planned if replayed else 0,
        faulted_evaluations=replayed.faulted if replayed else 0,
        notes=parts.get("notes", []),
        simulated=simulated_roles(night.settings),
        reproduction=gated.reproduction if gated else None,
    )


def _reproduction_notes(night: Night, gated: GateOutput) -> list[str]:
    from nightloop.reproduction import mismatch_warning, summary

    if gated.reproduction is None:
        return []
    warning = mismatch_warning(gated.reproduction, night.settings.replay.runner.name)
    return [summary(gated.reproduction), *([warning] if warning else [])]


def direct(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    """The default stage runner: a plain call (the Prefect flow passes one that wraps each stage in a task)."""
    return fn(*args)


def _stopping_between_stages(run: StageRunner, night: Night) -> StageRunner:
    """``run``, refusing to start a stage once the night was asked to stop (a finished stage is kept)."""

    def run_unless_stopped(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        if night.stop is not None and night.stop.is_set():
            raise NightInterrupted(f"the night was interrupted (Ctrl-C) before {stage}")
        output = run(stage, fn, *args)
        if night.stop is not None and night.stop.is_set():
            raise NightInterrupted(f"the night was interrupted (Ctrl-C) during {stage}")
        return output

    return run_unless_stopped


def _run_stages(night: Night, parts: dict[str, Any], run: StageRunner = direct) -> str:
    """Run the stages in order, filling ``parts``; return the night's status."""
    notes: list[str] = parts["notes"]
    parts["ingested"] = ingested = run("ingest", stage_ingest, night)
    if not ingested.conversation_ids:
        raise StopNight("stopped_early", f"no conversations for {night.prompt_name!r} ending before {night.logical_date}")
    refuse_sim_agent_on_real_conversations(night.settings, _conversations(night, ingested.conversation_ids))
    parts["classified"] = classified = run("classify", stage_classify, night, ingested)
    watched = run("watch", stage_watch, night)
    if watched.rolled_back_to is not None:
        notes.append(f"watch rolled production back to v{watched.rolled_back_to}: " + "; ".join(watched.reasons))
    if classified.new_failures < night.settings.min_failures:
        raise StopNight(
            "stopped_early",
            f"only {classified.new_failures} new failure(s) (minimum {night.settings.min_failures}); nothing to improve",
        )
    replay_set = run("replay_set", stage_replay_set, night, ingested, classified)
    notes.extend(replay_set.notes)
    if not replay_set.train_failure_ids or not any(c.split == "holdout" and c.origin != "regression" for c in replay_set.cases):
        raise StopNight("stopped_early", "no replayable failure cases for both the judge (train) and the gate (holdout)")
    parts["judged"] = judged = run("judge", stage_judge, night, classified, replay_set)
    notes.extend(f"judge: {e}" for e in judged.errors)
    notes.extend(f"refused candidate {i.candidate.id}: {'; '.join(i.reasons)}" for i in judged.invalid)
    if not judged.candidates and _carried(night, replay_set).candidate is None:
        raise StopNight("done", "the judge proposed no valid candidate tonight")
    parts["replayed"] = replayed = run("replay", stage_replay, night, replay_set, judged)
    if replayed.unrecorded_tool_calls:
        notes.append(
            f"replay: {replayed.unrecorded_tool_calls} tool call(s) had no recorded result (a tool or arguments "
            "production never used); the recorded runner answered them with an error or another recorded result. "
            "Run your agent's own tools with [replay.runner] name = \"python\" or \"http\""
        )
    if replayed.budget_exhausted:
        raise StopNight("budget_exhausted", "the budget ran out during replay; re-run with a larger budget to resume")
    if replayed.faulted:
        raise StopNight(night_status_for(replayed.planned, replayed.faulted), replayed.note)
    parts["gated"] = gated = run("gate", stage_gate, night, replay_set, judged)
    notes.extend(gated.notes)
    notes.extend(_reproduction_notes(night, gated))
    parts["reviewed"] = reviewed = run("review", stage_review, night, judged, gated)
    notes.append(reviewed.action)
    return "done"


def run_night(
    settings: Settings,
    prompt_name: str,
    logical_date: date,
    *,
    store: Store | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    runner: StageRunner = direct,
    clients: Any = None,
    stop: threading.Event | None = None,
    limits: Any = None,
) -> NightReport:
    """Run (or resume) one prompt's night and return its report; a finished night is skipped unless ``force``.

    ``clients`` (judge/agent/scorer :class:`nightloop.llm.client.LLMClient` s) defaults to the configured providers.
    When ``stop`` is set (Ctrl-C), no new model call starts, calls in flight get ``ABANDON_AFTER_S`` to finish,
    no further stage runs, and the night ends ``interrupted`` with its spend recorded; a re-run resumes it.
    ``limits`` (:class:`nightloop.rate_limits.RateLimits`) are shared with other nights running at the same time.
    """
    from nightloop.plugins import check_config

    check_config(settings)  # an unknown detector, scorer or runner name fails here, listing the valid ones
    stop = stop if stop is not None else requested_stop()
    own_store = store is None
    store = store or Store(settings.db)
    lease = None
    try:
        night = Night(
            settings, store, prompt_name, logical_date, progress=progress, stop=stop, _clients=clients, limits=limits
        )
        lease = store.leases.hold(prompt_name, night.run_id)  # one running night per prompt and store
        status = store.runs.status(night.run_id)
        if status not in (None, "running", "budget_exhausted", "interrupted", *UNFINISHED_STATES) and not force:
            report = store.runs.report(night.run_id)
            if report is not None:
                return report.model_copy(
                    update={"status": "skipped", "notes": [f"night {logical_date} already finished ({status}); use --force to re-run"]}
                )
        if clients is not None:
            clients.share_ledger(night.ledger)  # injected clients spend the night's budget, not their own
        if force:
            store.runs.reset(night.run_id)
            store.spend.forget_run(night.run_id)
        store.runs.start(night.run_id, prompt_name, logical_date.isoformat(), settings.config_hash())
        parts: dict[str, Any] = {"notes": []}
        try:
            status = _run_stages(night, parts, _stopping_between_stages(runner, night))
        except StopNight as stopped:
            status = stopped.status
            parts["notes"].append(stopped.reason)
        except NightInterrupted as exc:
            status = "interrupted"
            parts["notes"].append(f"{exc}; re-run the same command to resume (finished work is kept)")
        except KeyboardInterrupt:
            # A second Ctrl-C: record what was spent and that the night can resume, then stop at once.
            parts["notes"].append("interrupted (Ctrl-C twice); re-run the same command to resume")
            _finish(night, _report(night, "interrupted", **parts))
            raise
        except BudgetExceeded as exc:
            status = "budget_exhausted"
            parts["notes"].append(str(exc))
        except ProviderError as exc:
            # Recorded, not raised: the report says what failed, and a re-run resumes from the unfinished stage.
            status = "failed"
            parts["notes"].append(f"model provider failed: {exc}")
        except Exception as exc:
            if is_disk_full(exc):
                _record_failure_if_room(night, parts, "the disk holding the store is full; free space and re-run")
                raise
            # Record the failure so the report shows it and a re-run resumes; then let the caller see the error.
            parts["notes"].append(f"night failed: {type(exc).__name__}: {exc}")
            _finish(night, _report(night, "failed", **parts))
            raise
        report = _report(night, status, **parts)
        _finish(night, report)
        return report
    except Exception as exc:
        if is_disk_full(exc):  # said plainly, not as a chain of SQLite tracebacks
            raise store_full(settings.db) from exc
        raise
    finally:
        if lease is not None:
            _release_unless_disk_full(lease)
        if own_store:
            store.close()


def _finish(night: Night, report: NightReport) -> None:
    """Record the night's end; its row keeps this run's own spend (the report says the whole night's)."""
    night.store.runs.finish(report, spent=night.store.spend.of_run(night.run_id))


def _record_failure_if_room(night: Night, parts: dict[str, Any], note: str) -> None:
    """Record the night as failed when the full disk still has room for it; else it stays ``running``.

    Either way a plain re-run resumes it: both states are unfinished, and finished stages are kept.
    """
    parts["notes"].append(note)
    try:
        _finish(night, _report(night, "failed", **parts))
    except Exception as exc:
        if not is_disk_full(exc):
            raise


def _release_unless_disk_full(lease: Any) -> None:
    """Release the lease; on a full disk it stays, and the next run takes it over (its holder is gone)."""
    try:
        lease.release()
    except Exception as exc:
        if not is_disk_full(exc):
            raise


def managed_prompts(store: Store) -> list[str]:
    """Every prompt the store manages (the default set of prompts for a night)."""
    return store.prompts.names()


def nights_between(since: date, until: date) -> list[date]:
    if until < since:
        raise NightloopError(f"--until {until} is before --since {since}; swap them")
    return [date.fromordinal(d) for d in range(since.toordinal(), until.toordinal() + 1)]


#: Called as ``event(prompt, date, stage, message)``: stage ``waiting`` / a stage name / ``finished`` (message: status).
NightEvent = Callable[[str, date, str, str], None]
#: Runs one prompt's nights for the given dates, in order (the Prefect flow passes one child flow run per prompt).
OnePrompt = Callable[[str, list[date]], list[NightReport]]


def run_nights(
    settings: Settings,
    prompts: list[str],
    dates: list[date],
    *,
    force: bool = False,
    event: NightEvent | None = None,
    stop: threading.Event | None = None,
    runner: StageRunner = direct,
    limits: Any = None,
    one_prompt: OnePrompt | None = None,
) -> list[NightReport]:
    """Every night of ``prompts`` × ``dates``: each prompt's dates in order, ``[schedule] max_parallel_prompts``
    prompts at a time, all drawing on one set of provider rate limits; reports in prompt, then date, order.

    Each prompt's nights open their own store connection (WAL and a busy timeout let nights of different
    prompts write side by side; each holds its prompt's lease). One prompt's failure never stops another's:
    a night that raises is recorded ``failed`` with the error in its notes, and its prompt's later dates still run
    (a :class:`ConfigError` or :class:`StoreFull` is raised: it is the same for every prompt).
    ``one_prompt`` replaces how one prompt's dates are run (the Prefect flow makes each a child flow run); it then
    owns that prompt's ``event`` calls too.
    """
    from concurrent.futures import ThreadPoolExecutor
    from contextvars import copy_context

    from nightloop.rate_limits import RateLimits

    limits = limits or RateLimits.from_settings(settings)

    def nights_of(prompt_name: str, prompt_dates: list[date]) -> list[NightReport]:
        reports = []
        for night_date in prompt_dates:
            if stop is not None and stop.is_set():
                break
            reports.append(_one_of_many(settings, prompt_name, night_date, force, event, stop, runner, limits))
        return reports

    run_prompt = one_prompt or nights_of
    for name in prompts if one_prompt is None and event is not None else ():
        for night_date in dates:
            event(name, night_date, "waiting", "")
    workers = min(settings.schedule.max_parallel_prompts, len(prompts))
    if workers <= 1:
        return [report for name in prompts for report in run_prompt(name, dates)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="night") as pool:
        # Each thread runs in a copy of the caller's context (a Prefect flow run's, when there is one).
        futures = [pool.submit(copy_context().run, run_prompt, name, dates) for name in prompts]
        return [report for future in futures for report in future.result()]


def _one_of_many(
    settings: Settings, prompt_name: str, night_date: date, force: bool, event: NightEvent | None,
    stop: threading.Event | None, runner: StageRunner, limits: Any,
) -> NightReport:
    def progress(stage: str, message: str) -> None:
        if event is not None:
            event(prompt_name, night_date, stage, message)

    progress("starting", "")
    try:
        report = run_night(settings, prompt_name, night_date, force=force, progress=progress, stop=stop, runner=runner, limits=limits)
    except (ConfigError, StoreFull):
        raise  # the same for every prompt: the user's to fix before any night can run
    except Exception as exc:  # recorded by run_night when it got that far; the other prompts go on
        report = NightReport(
            run_id=run_id_for(settings, prompt_name, night_date), prompt_name=prompt_name, date=night_date,
            status="failed", notes=[f"night failed: {type(exc).__name__}: {exc}"],
        )
    progress("finished", report.status)
    return report
