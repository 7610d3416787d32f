"""The predict step: for every market with a newly closed candle, features -> model -> prediction.

Every prediction of a tick goes into ONE JSON-lines object with a deterministic key (a retried
tick overwrites it). A market that fails is logged with a reason code and counted; the others go on.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from traderai.adapters.logs import PREDICTIONS, JsonLinesLog
from traderai.contracts import EDGE_EVIDENCE_KEYS, OUTCOMES, SIDES, Candles, MarketInfo, Prediction, iso_utc
from traderai.core.drift import drift_score
from traderai.core.features import FEATURE_NAMES, atr, compute_features
from traderai.events import Handoff
from traderai.market import MarketDataError
from traderai.market.fetch import fetch_markets
from traderai.model.serving import ModelNotFoundError
from traderai.observability import logger, metrics
from traderai.ports import MarketDataSource, ModelProvider, PredictiveModel
from traderai.settings import Settings


def outcome_fields(model: PredictiveModel, row: np.ndarray) -> dict[str, Any]:
    """The prediction's issue-12 fields from the served model (CONTRACT-12): each side's five outcome
    probabilities for this feature row, the expiry exits and bracket they were trained for, and the
    manifest's out-of-sample evidence for this market. None for whatever the model does not have (a
    model without an outcome part, a manifest without evidence: the signal step then keeps it paper)."""
    predict = getattr(model, "predict_outcomes", None)
    probabilities = predict(row[None, :]) if predict is not None else None
    manifest = getattr(model, "manifest", None) or {}
    return {
        "outcome_probabilities": None if probabilities is None else {
            side: dict(zip(OUTCOMES, (float(v) for v in p[0]), strict=True)) for side, p in probabilities.items()},
        "expiry_exit_atr": getattr(model, "expiry_exit_atr", None) if probabilities is not None else None,
        "bracket": getattr(model, "bracket", None) if probabilities is not None else None,
        "edge_evidence": _evidence(manifest.get("edge_evidence")),
    }


def _evidence(raw: Any) -> dict[str, dict[str, float]] | None:
    """The manifest's evidence reduced to the contract's {side: {n, mean_net_pct, se_pct}}: a side without a
    figure (no signals on the test stretch) is left out, and no side at all is None (unproven)."""
    if not isinstance(raw, dict):
        return None
    kept = {side: {k: raw[side][k] for k in EDGE_EVIDENCE_KEYS} for side in SIDES
            if isinstance(raw.get(side), dict) and all(raw[side].get(k) is not None for k in EDGE_EVIDENCE_KEYS)}
    return kept or None


@dataclass(frozen=True, slots=True)
class MarketFailure:
    symbol: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"symbol": self.symbol, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class TickResult:
    tick_time: datetime
    predictions: tuple[Prediction, ...]
    failures: tuple[MarketFailure, ...]
    skipped: tuple[str, ...]  # markets with no newly closed candle in this tick: nothing to do
    log_key: str | None
    shard: str | None = None  # `s003of010` when this is one shard of a sharded tick

    def handoff(self) -> Handoff:
        """What SignalFunction gets: the compact predictions inline, or, when they would not fit a Lambda
        destination (HANDOFF_INLINE_LIMIT_BYTES), a claim check on this tick's predictions/ object."""
        inline = Handoff(self.tick_time, self.predictions, tuple(f.to_dict() for f in self.failures),
                         shard=self.shard)
        return inline.for_destination(self.log_key)


def last_candle_is_new(candles: Candles, tick_time: datetime, tick_seconds: int, timeframe_seconds: int) -> bool:
    """A candle close is the unit of work: only the tick whose window holds the close predicts on it."""
    close_ms = int(candles.open_time_ms[-1]) + timeframe_seconds * 1000
    return close_ms > (tick_time.timestamp() - tick_seconds) * 1000


def closed_by(candles: Candles, tick_time: datetime, timeframe_seconds: int) -> Candles:
    """Keep candles closed at the tick's mark, so a retry later in time predicts on the same candle."""
    close_ms = candles.open_time_ms + timeframe_seconds * 1000
    keep = int(np.searchsorted(close_ms, tick_time.timestamp() * 1000, side="right"))
    return candles.slice(0, keep)


def predict_market(candles: Candles, info: MarketInfo, model: PredictiveModel, settings: Settings,
                   tick_time: datetime, now: datetime) -> Prediction:
    """One prediction on the last closed candle (raises MarketDataError subclasses with a reason)."""
    if model.expires_at is not None and now >= model.expires_at:
        raise ModelUnusableError("model_expired", f"model {model.model_id} expired at {iso_utc(model.expires_at)}")
    matrix = compute_features(candles)
    row = matrix[-1]
    if not np.all(np.isfinite(row)):
        raise ModelUnusableError("insufficient_history",
                                 f"{len(candles)} candles are not enough to compute every feature")
    if tuple(model.feature_names) != FEATURE_NAMES:
        raise ModelUnusableError("feature_mismatch", f"model {model.model_id} expects other features")
    probability = float(model.predict_proba(row[None, :])[0])
    # Drift: recent feature rows vs the training quantiles in the manifest (None if it has none).
    manifest = getattr(model, "manifest", None) or {}
    drift = drift_score(manifest.get("feature_quantiles"), matrix, FEATURE_NAMES)
    atr_now = float(atr(candles.high, candles.low, candles.close)[-1])
    candle_time = datetime.fromtimestamp(int(candles.open_time_ms[-1]) / 1000, tz=now.tzinfo)
    return Prediction(
        batch_id=f"{model.model_id}_{tick_time:%Y%m%d_%H%M%S}",
        model_id=model.model_id,
        exchange=settings.exchange_id,
        symbol=candles.symbol,
        timeframe=candles.timeframe,
        candle_time=iso_utc(candle_time),
        predicted_at=iso_utc(now),
        price=float(candles.close[-1]),
        atr=atr_now,
        probability=probability,
        confidence=Prediction.confidence_of(probability),
        side=Prediction.side_of(probability),
        horizon=int(model.horizon),
        quote_volume_24h=info.quote_volume_24h,
        amount_step=info.amount_step,
        price_step=info.price_step,
        drift_score=drift,
        features={name: float(v) for name, v in zip(FEATURE_NAMES, row, strict=True)},
        **outcome_fields(model, row),
    )


class ModelUnusableError(MarketDataError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# A tick with no candle close (at 15m, two ticks in three) warms the sandbox's model cache with the whole market
# list, up to this many markets (~54 KB of memory each once loaded; PredictFunction has 1,024 MB): above the
# 2,285 spot markets one IP's default budget serves in shards of 100 (docs/markets.md), so every list a single
# IP can serve is warmed.
WARM_LIMIT = 2500


async def run_tick(settings: Settings, source: MarketDataSource, models: ModelProvider, log: JsonLinesLog,
                   tick_time: datetime, now: datetime, markets: tuple[str, ...] | None = None,
                   shard: str | None = None, warm: Callable[[], tuple[str, ...]] | None = None) -> TickResult:
    """Fetch every market (or this shard's `markets`) concurrently, predict where a candle closed, log all
    predictions at once (a shard in its own object). In a tick with no close, `warm()` names the markets whose
    models to load meanwhile (the whole list: a shard lands on whichever sandbox is free, so the next closing
    tick may bring this sandbox any shard)."""
    markets = settings.markets if markets is None else markets
    # The models' S3 reads (the stamp; a market's model the first time this sandbox meets it, or after its
    # pointer moved) run while the exchange answers, all at once, not one after another in the loop below
    # (ModelRegistry.prefetch): the shard's markets in a tick whose window holds a candle close, the whole list
    # in one that has none (it predicts nothing: the reads cost no one time).
    prefetch = getattr(models, "prefetch", None)
    closes = int(tick_time.timestamp()) % settings.timeframe_seconds < settings.tick_seconds
    wanted = markets if closes else _to_warm(warm) if prefetch is not None else ()
    prefetched = (asyncio.get_running_loop().run_in_executor(None, prefetch, wanted, settings.timeframe)
                  if prefetch is not None and wanted else None)
    snapshots, errors = await fetch_markets(source, markets, settings.timeframe,
                                            settings.candle_limit + 1, now)
    if prefetched is not None:
        await prefetched
    failures = [MarketFailure(symbol, error.reason, str(error)) for symbol, error in errors.items()]
    predictions: list[Prediction] = []
    skipped: list[str] = []
    for symbol in markets:
        if symbol not in snapshots:
            continue
        candles = closed_by(snapshots[symbol].candles, tick_time, settings.timeframe_seconds)
        if len(candles) == 0 or not last_candle_is_new(candles, tick_time, settings.tick_seconds,
                                                       settings.timeframe_seconds):
            skipped.append(symbol)
            continue
        try:
            model = models.get(symbol, settings.timeframe)
            predictions.append(predict_market(candles.tail(settings.candle_limit), snapshots[symbol].info,
                                              model, settings, tick_time, now))
        except ModelNotFoundError as exc:  # the registry's "nothing published": this market only
            failures.append(MarketFailure(symbol, "model_missing", str(exc)))
        except MarketDataError as exc:
            failures.append(MarketFailure(symbol, exc.reason, str(exc)))
        # Anything else (a KeyError or IndexError is a bug, not a missing model) fails the tick loudly:
        # the invocation errors, Lambda retries, and the dead-letter queue and Errors alarm see it.
    for failure in failures:
        logger.warning(f"Prediction failed for {failure.symbol}: {failure.detail}",
                       extra={"reason": failure.reason, "symbol": failure.symbol})
    key = log.write(PREDICTIONS, tick_time, [p.to_dict() for p in predictions], shard) if predictions else None
    _count(predictions, failures)
    return TickResult(tick_time, tuple(predictions), tuple(failures), tuple(skipped), key, shard)


def _to_warm(warm: Callable[[], tuple[str, ...]] | None) -> tuple[str, ...]:
    """The markets whose models a tick without a close loads: none if the list is over WARM_LIMIT or cannot be
    read (the tick goes on; each market's model then loads when its shard first lands here), with the reason."""
    if warm is None:
        return ()
    try:
        listed = warm()
    except Exception as exc:  # noqa: BLE001 - warming is an optimisation: it never fails the tick
        logger.warning(f"Model cache not warmed: the market list cannot be read: {exc}",
                       extra={"reason": "warm_list_unreadable"})
        return ()
    if len(listed) > WARM_LIMIT:
        logger.info(f"Model cache not warmed: {len(listed):,} markets, over WARM_LIMIT {WARM_LIMIT:,}",
                    extra={"reason": "warm_over_limit"})
        return ()
    return listed


def next_tick_after(moment: datetime, tick_seconds: int) -> datetime:
    epoch = math.floor(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % tick_seconds, tz=moment.tzinfo) + timedelta(seconds=tick_seconds)


def _count(predictions: list[Prediction], failures: list[MarketFailure]) -> None:
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(predictions))
    # The total (every tick, 0 when healthy) is what MarketFailuresAlarm watches; by reason says which.
    metrics.add_metric(name="MarketFailures", unit=MetricUnit.Count, value=len(failures))
    by_reason: dict[str, int] = {}
    for failure in failures:
        by_reason[failure.reason] = by_reason.get(failure.reason, 0) + 1
    for reason, count in sorted(by_reason.items()):
        with single_metric(name="MarketFailures", unit=MetricUnit.Count, value=count,
                           namespace=metrics.namespace) as metric:
            metric.add_dimension(name="reason", value=reason)
