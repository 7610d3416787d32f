"""The signal step: decide on every prediction of a tick, store the accepted, log every decision.

The predictions come inline in the hand-off or, for a claim check, from the tick's predictions/ object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from traderai.adapters.logs import DECISIONS, JsonLinesLog, LogObjectMissing
from traderai.contracts import Decision, Prediction, Signal, Strategy, iso_utc
from traderai.core.protections import Lock, close_of, market_locks
from traderai.core.signals import decide, signal_id_for
from traderai.events import EventError, Handoff, parse_predictions
from traderai.observability import logger, metrics
from traderai.ports import SignalRepository


@dataclass(frozen=True, slots=True)
class SignalOutcome:
    decisions: tuple[Decision, ...]
    stored: tuple[Signal, ...]
    already_stored: tuple[str, ...]
    log_key: str | None

    def summary(self) -> dict[str, object]:
        rejected: dict[str, int] = {}
        for decision in self.decisions:
            if decision.reason:
                rejected[decision.reason] = rejected.get(decision.reason, 0) + 1
        paper: dict[str, int] = {}
        for decision in self.decisions:
            if decision.tradeable is False:
                for reason in decision.paper_reasons:
                    paper[reason] = paper.get(reason, 0) + 1
        return {"decisions": len(self.decisions), "accepted": sum(d.accepted for d in self.decisions),
                "tradeable": sum(d.tradeable is True for d in self.decisions),
                "stored": len(self.stored), "already_stored": len(self.already_stored),
                "rejected": rejected, "paper": paper, "log_key": self.log_key}


def process_handoff(handoff: Handoff, strategy: Strategy, repository: SignalRepository, log: JsonLinesLog,
                    now: datetime) -> SignalOutcome:
    """Decide, log every decision as one object per tick, then store the accepted signals idempotently.

    The log is written first (write-ahead): every signal a user can see has its decision in the log,
    and a tick whose log cannot be written stores nothing. A failed signal write fails the tick after
    counting it (metric `SignalWriteFailures`); the retry re-decides the same predictions: its own
    earlier signal (same deterministic id) does not count as a duplicate, the log object is
    overwritten and the conditional put skips what is already stored (docs/operations.md).
    """
    predictions = handoff.predictions if handoff.predictions_key is None else redeem_claim_check(handoff, log)
    active = repository.active_signal_ids({p.symbol for p in predictions}, now)
    decisions: list[Decision] = []
    accepted: list[tuple[Decision, Signal]] = []
    locks = MarketLocks(repository, strategy, now)
    for prediction in predictions:
        own_id = signal_id_for(prediction)
        blocking = frozenset(pair for pair, ids in active.items() if ids - {own_id})
        decision, signal = decide(prediction, strategy, decided_at=now, active=blocking)
        if signal is not None and strategy.edge_gate != "off" and (found := locks.of(prediction.symbol)):
            decision, signal = decide(prediction, strategy, decided_at=now, active=blocking, locks=found)
        decisions.append(decision)
        if signal is None:
            logger.info(decision.message, extra={"reason": decision.reason, "symbol": decision.symbol,
                                                 "reasons": list(decision.reasons)})
            continue
        accepted.append((decision, signal))
        active[(signal.symbol, signal.side)] = active.get((signal.symbol, signal.side), frozenset()) | {own_id}
    key = (log.write(DECISIONS, handoff.tick_time, [d.to_dict() for d in decisions], handoff.shard)
           if decisions else None)
    stored: list[Signal] = []
    already: list[str] = []
    for decision, signal in accepted:
        if _put(repository, signal):
            stored.append(signal)
            logger.info(decision.message, extra={"signal_id": signal.signal_id})
        else:
            already.append(signal.signal_id)
    _count(decisions, len(stored))
    return SignalOutcome(tuple(decisions), tuple(stored), tuple(already), key)


class MarketLocks:
    """The protections in force per market at `now`, read only for markets with an accepted candidate.

    Locks are computed at decision time from a Query of the market's recent closed signals (no lock
    state is stored): the cost is one Query per market per tick *that has a candidate the seed's rules
    accept* (a few a day per market), and the lock can never disagree with the track record it comes from.
    """

    def __init__(self, repository: SignalRepository, strategy: Strategy, now: datetime) -> None:
        self._repository, self._settings, self._now = repository, strategy.protections, now
        # A signal closed within the guards' history was created at most one signal life before it.
        self._since = iso_utc(now - timedelta(hours=self._settings.history_hours + strategy.signal_ttl_hours))
        self._cache: dict[str, tuple[Lock, ...]] = {}

    def of(self, symbol: str) -> tuple[Lock, ...]:
        if not self._settings.history_hours:
            return ()
        if symbol not in self._cache:
            closes = (close_of(s) for s in self._repository.closed_signals(symbol, self._since))
            self._cache[symbol] = tuple(market_locks(symbol, (c for c in closes if c), self._now, self._settings))
        return self._cache[symbol]


def redeem_claim_check(handoff: Handoff, log: JsonLinesLog) -> tuple[Prediction, ...]:
    """The predictions a claim check names, read from the tick's predictions/ object.

    The object holds the full records; their feature vectors play no part in a decision and are dropped.
    A missing object is an EventError (the hand-off cannot be decided; it ends in the dead-letter queue).
    """
    key = handoff.predictions_key
    if key is None:
        raise ValueError("not a claim check: the hand-off carries its predictions inline")
    try:
        records = log.read(key)
    except LogObjectMissing as exc:
        raise EventError(f"claim check: no predictions to decide: {exc}") from exc
    predictions = parse_predictions([{k: v for k, v in r.items() if k != "features"} for r in records], where=key)
    if len(predictions) != handoff.logged_count:
        # A later run of the same tick overwrote the object: decide what it holds now.
        logger.warning("Claim check count differs from its predictions object",
                       extra={"predictions_key": key, "count": handoff.logged_count, "found": len(predictions)})
    return predictions


def _put(repository: SignalRepository, signal: Signal) -> bool:
    """Conditional put; a failure (after the client's bounded retries) is counted, logged and re-raised."""
    try:
        return repository.put_new(signal)
    except Exception:
        metrics.add_metric(name="SignalWriteFailures", unit=MetricUnit.Count, value=1)
        logger.exception("Signal write failed; the tick fails and is retried",
                         extra={"signal_id": signal.signal_id, "symbol": signal.symbol})
        raise


def _count(decisions: list[Decision], stored: int) -> None:
    metrics.add_metric(name="Decisions", unit=MetricUnit.Count, value=len(decisions))
    metrics.add_metric(name="SignalsAccepted", unit=MetricUnit.Count, value=stored)
    metrics.add_metric(name="SignalsTradeable", unit=MetricUnit.Count,
                       value=sum(d.tradeable is True for d in decisions))
    paper: dict[str, int] = {}
    for decision in decisions:
        if decision.tradeable is False:
            for reason in decision.paper_reasons:
                paper[reason] = paper.get(reason, 0) + 1
    for reason, count in sorted(paper.items()):
        with single_metric(name="SignalsPaper", unit=MetricUnit.Count, value=count,
                           namespace=metrics.namespace) as metric:
            metric.add_dimension(name="reason", value=reason)
    reasons: dict[str, int] = {}
    for decision in decisions:
        if decision.reason:
            reasons[decision.reason] = reasons.get(decision.reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        with single_metric(name="SignalsRejected", unit=MetricUnit.Count, value=count,
                           namespace=metrics.namespace) as metric:
            metric.add_dimension(name="reason", value=reason)
