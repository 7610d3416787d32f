"""Parse the events that reach the pipeline functions into typed values, or fail naming what is wrong.

PredictFunction gets an EventBridge scheduled event. SignalFunction gets the Lambda-destination
envelope wrapping PredictFunction's reply, the reply itself, or a bare list of predictions
(handy for `sam local invoke`). The reply carries the compact predictions inline or, when they would
not fit a destination, the key of the tick's predictions/ object (a claim check). Anything else raises
EventError, so the async invocation fails and the failure destination (the dead-letter queue) keeps
the event.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from traderai.adapters.logs import PREDICTIONS, log_key
from traderai.contracts import ContractError, Prediction, iso_utc, parse_iso_utc

HANDOFF_INLINE_LIMIT_BYTES = 200 * 1024
"""The largest reply PredictFunction hands over inline. Lambda carries at most 256 KB through an async
invocation or a destination, and the destination envelope wraps the reply with the request and its
context; above this bound (~400 markets at ~510 bytes a compact prediction) the reply is a claim check."""


class EventError(ValueError):
    """The event does not have a shape this function accepts; the message says which and why."""


def tick_mark(moment: datetime, tick_seconds: int) -> datetime:
    """Floor a time to its tick (e.g. 12:05:07 -> 12:05:00): the deterministic unit of a retry."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % tick_seconds, tz=UTC)


def parse_schedule_event(event: Any, tick_seconds: int) -> datetime:
    """The tick's clock mark from an EventBridge scheduled event (its `time`, floored to the tick)."""
    if not isinstance(event, dict):
        raise EventError(f"expected an EventBridge scheduled event (JSON object), got {type(event).__name__}")
    if event.get("detail-type") != "Scheduled Event" or "time" not in event:
        raise EventError("expected an EventBridge scheduled event with detail-type 'Scheduled Event' "
                         f"and a 'time'; got keys {sorted(event)[:8]}")
    try:
        return tick_mark(parse_iso_utc(event["time"], "time"), tick_seconds)
    except ContractError as exc:
        raise EventError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Handoff:
    """What PredictFunction hands to SignalFunction: the tick and its compact predictions, or a claim check.

    A claim check has no inline predictions: `predictions_key` names the tick's predictions/ object
    (written before the reply) and `logged_count` says how many predictions it holds.
    """

    tick_time: datetime
    predictions: tuple[Prediction, ...]
    failures: tuple[dict[str, str], ...] = ()
    predictions_key: str | None = None
    logged_count: int = 0
    shard: str | None = None  # `s003of010` in a sharded tick: names the shard's own log objects

    @property
    def count(self) -> int:
        return self.logged_count if self.predictions_key is not None else len(self.predictions)

    def to_dict(self) -> dict[str, Any]:
        shard = {"shard": self.shard} if self.shard else {}
        if self.predictions_key is not None:
            return {"tick_time": iso_utc(self.tick_time), "predictions_key": self.predictions_key,
                    "count": self.logged_count, "failures": list(self.failures), **shard}
        return {"tick_time": iso_utc(self.tick_time),
                "predictions": [p.to_dict(with_features=False) for p in self.predictions],
                "count": len(self.predictions), "failures": list(self.failures), **shard}

    def for_destination(self, predictions_key: str | None,
                        max_inline_bytes: int = HANDOFF_INLINE_LIMIT_BYTES) -> Handoff:
        """This hand-off if its reply fits `max_inline_bytes`, else a claim check on `predictions_key`
        (the predictions/ object that already holds the same predictions, features included)."""
        if predictions_key is None or reply_size(self.to_dict()) <= max_inline_bytes:
            return self
        return Handoff(self.tick_time, (), self.failures, predictions_key=predictions_key,
                       logged_count=len(self.predictions), shard=self.shard)


def reply_size(reply: Any) -> int:
    """Bytes of a reply as the Python runtime serialises it (`json.dumps`, default separators)."""
    return len(json.dumps(reply).encode())


def parse_handoff(event: Any, now: datetime) -> Handoff:
    """Accept a destination envelope, a handoff object (inline or claim check) or a bare prediction list."""
    if isinstance(event, dict) and "responsePayload" in event and "requestContext" in event:
        condition = (event.get("requestContext") or {}).get("condition")
        if condition not in (None, "Success"):
            raise EventError(f"destination envelope with condition {condition!r}: only successes carry "
                             "predictions")
        event = event["responsePayload"]
    if isinstance(event, list):
        return Handoff(tick_time=_tick_of(event, now), predictions=parse_predictions(event))
    if isinstance(event, dict) and "predictions_key" in event:
        return _claim_check(event)
    if isinstance(event, dict) and isinstance(event.get("predictions"), list):
        tick = event.get("tick_time")
        try:
            tick_time = parse_iso_utc(tick, "tick_time") if tick else _tick_of(event["predictions"], now)
        except ContractError as exc:
            raise EventError(str(exc)) from exc
        return Handoff(tick_time=tick_time, predictions=parse_predictions(event["predictions"]),
                       failures=tuple(event.get("failures") or ()), shard=_shard_label(event))
    shape = type(event).__name__ if not isinstance(event, dict) else f"object with keys {sorted(event)[:8]}"
    raise EventError("expected a Lambda destination envelope, a {'tick_time', 'predictions'} object, a "
                     "{'tick_time', 'predictions_key', 'count'} claim check or a list of predictions; "
                     f"got {shape}")


def _claim_check(event: dict[str, Any]) -> Handoff:
    """A claim check may only name its own tick's predictions/ object: SignalFunction reads nothing else."""
    try:
        tick_time = parse_iso_utc(event.get("tick_time"), "tick_time")
    except ContractError as exc:
        raise EventError(f"claim check: {exc}") from exc
    key = event.get("predictions_key")
    if not isinstance(key, str) or not key:
        raise EventError(f"claim check: predictions_key is missing or empty (got {key!r})")
    if not key.startswith(f"{PREDICTIONS}/"):
        raise EventError(f"claim check: predictions_key {key!r} is not under {PREDICTIONS}/")
    shard = _shard_label(event)
    expected = log_key(PREDICTIONS, tick_time, shard)
    if key != expected:
        raise EventError(f"claim check: predictions_key {key!r} is not the predictions object of tick "
                         f"{iso_utc(tick_time)}{f' shard {shard}' if shard else ''} ({expected!r})")
    count = event.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise EventError(f"claim check: count must be a non-negative integer, got {count!r}")
    return Handoff(tick_time=tick_time, predictions=(), failures=tuple(event.get("failures") or ()),
                   predictions_key=key, logged_count=count, shard=shard)


def _shard_label(event: dict[str, Any]) -> str | None:
    """The hand-off's shard label (`s003of010`), or None for an unsharded tick; anything else is refused."""
    shard = event.get("shard")
    if shard is None:
        return None
    if not isinstance(shard, str) or not re.fullmatch(r"s[0-9]{3,6}of[0-9]{3,6}", shard):
        raise EventError(f"shard: {shard!r} is not a shard label like 's003of010'")
    return shard


def parse_predictions(items: list[Any], where: str = "predictions") -> tuple[Prediction, ...]:
    """Every item as a Prediction, or EventError naming the first bad one as `where[index]`."""
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(Prediction.from_dict(item))
        except ContractError as exc:
            raise EventError(f"{where}[{index}]: {exc}") from exc
    return tuple(parsed)


def _tick_of(items: list[Any], now: datetime) -> datetime:
    """A bare list has no tick: use the newest predicted_at among its items, else now."""
    times = [item.get("predicted_at") for item in items if isinstance(item, dict)]
    parsed = []
    for text in times:
        try:
            parsed.append(parse_iso_utc(text, "predicted_at"))
        except ContractError:
            continue
    return max(parsed) if parsed else now


def require_fields(event: Any, paths: tuple[str, ...], expected: str) -> None:
    """Raise EventError naming `expected` and the first missing dotted path (e.g. `requestContext.http.method`).

    For handlers whose framework would otherwise fail on a wrong-shaped event with a bare KeyError/TypeError.
    """
    for path in paths:
        value: Any = event
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            shape = type(event).__name__ if not isinstance(event, dict) else f"object with keys {sorted(event)[:8]}"
            raise EventError(f"expected {expected}: {path} is missing; got {shape}")
