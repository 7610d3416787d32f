"""Parse the events that reach the pipeline functions into typed values, or fail naming what is wrong.

PredictFunction gets an EventBridge scheduled event. SignalFunction gets the Lambda-destination
envelope wrapping PredictFunction's reply, the reply itself, or a bare list of predictions
(handy for `sam local invoke`). Anything else raises EventError, so the async invocation fails
and the failure destination (the dead-letter queue) keeps the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from traderai.contracts import ContractError, Prediction, iso_utc, parse_iso_utc


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
    """What PredictFunction hands to SignalFunction: the tick and its compact predictions."""

    tick_time: datetime
    predictions: tuple[Prediction, ...]
    failures: tuple[dict[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"tick_time": iso_utc(self.tick_time),
                "predictions": [p.to_dict(with_features=False) for p in self.predictions],
                "failures": list(self.failures)}


def parse_handoff(event: Any, now: datetime) -> Handoff:
    """Accept a destination envelope, a handoff object or a bare prediction list."""
    if isinstance(event, dict) and "responsePayload" in event and "requestContext" in event:
        condition = (event.get("requestContext") or {}).get("condition")
        if condition not in (None, "Success"):
            raise EventError(f"destination envelope with condition {condition!r}: only successes carry "
                             "predictions")
        event = event["responsePayload"]
    if isinstance(event, list):
        return Handoff(tick_time=_tick_of(event, now), predictions=_predictions(event))
    if isinstance(event, dict) and isinstance(event.get("predictions"), list):
        tick = event.get("tick_time")
        try:
            tick_time = parse_iso_utc(tick, "tick_time") if tick else _tick_of(event["predictions"], now)
        except ContractError as exc:
            raise EventError(str(exc)) from exc
        return Handoff(tick_time=tick_time, predictions=_predictions(event["predictions"]),
                       failures=tuple(event.get("failures") or ()))
    shape = type(event).__name__ if not isinstance(event, dict) else f"object with keys {sorted(event)[:8]}"
    raise EventError("expected a Lambda destination envelope, a {'tick_time', 'predictions'} object or a "
                     f"list of predictions; got {shape}")


def _predictions(items: list[Any]) -> tuple[Prediction, ...]:
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(Prediction.from_dict(item))
        except ContractError as exc:
            raise EventError(f"predictions[{index}]: {exc}") from exc
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
