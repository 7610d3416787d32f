"""Schemathesis hooks of the e2e run (`SCHEMATHESIS_HOOKS=schemathesis_hooks`, see test_schemathesis.py).

Three rules of the API are stated in the OpenAPI document's parameter descriptions but cannot be written as
parameter schemas, because each ties one parameter to another or to the server's own secret:

- `since` at most `until` (GET /signals, GET /performance): otherwise 400 `since: ... is after until: ...`;
- GET /performance's window at most 366 days, and `window` or `since`, not both: otherwise 400;
- `next_token` only as a previous page issued it (HMAC-signed, bound to the filters): otherwise 400.

Only schema-VALID (positive) cases are kept inside these rules, by the smallest change: the two times
are swapped (a `since` without `until` gets an `until` 30 days later: the default is the server's clock,
which a client cannot know), `since` is moved up to 365 days before `until`, `since` is dropped beside
`window`, an invented `next_token` is dropped. Negative cases are sent as generated.
Everything else schemathesis generates reaches the API unchanged, and every check (`--checks all`)
applies to every reply.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis

MAX_PERFORMANCE_WINDOW = timedelta(days=366)


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.upper().replace(" ", "+"))
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 / 9999-12-31T23:00:00-05:00: the ends of the range
        return datetime.min.replace(tzinfo=UTC) if moment.year == 1 else datetime.max.replace(tzinfo=UTC)


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.query, dict):
        return
    query = case.query
    query.pop("next_token", None)
    since, until = query.get("since"), query.get("until")
    if isinstance(since, str) and isinstance(until, str):
        try:
            if _instant(since) > _instant(until):
                query["since"], query["until"] = until, since
        except ValueError:
            return  # not a time after all: left to the API (a 400 here is then a real finding)
    if case.path == "/performance":
        if query.get("window") is not None:
            query.pop("since", None)  # window or since, not both
        if isinstance(query.get("since"), str) and "until" not in query:
            # until defaults to the server's clock (the replay clock locally), which a client cannot know
            try:
                query["until"] = (_instant(query["since"]) + timedelta(days=30)).isoformat().replace("+00:00", "Z")
            except (ValueError, OverflowError):
                query["until"] = "9999-12-31T23:59:59Z"
        try:
            start = _instant(query["since"]) if isinstance(query.get("since"), str) else None
            end = _instant(query["until"]) if isinstance(query.get("until"), str) else None
        except ValueError:
            return
        if start is not None and end is not None and end - start > MAX_PERFORMANCE_WINDOW:
            query["since"] = (end - MAX_PERFORMANCE_WINDOW + timedelta(days=1)).isoformat().replace("+00:00", "Z")
