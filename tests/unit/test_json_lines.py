"""adapters.logs.to_json_lines: one compact, key-sorted JSON object per line, NaN and infinities as null."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from traderai.adapters.logs import to_json_lines

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6))
values = st.recursive(st.one_of(numbers, st.text(max_size=5), st.none(), st.booleans()),
                      lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                                              st.dictionaries(st.text(max_size=4), inner, max_size=4)),
                      max_leaves=12)
records = st.lists(st.dictionaries(st.text(max_size=6), values, max_size=6), max_size=5)


def _nulled(value: Any) -> Any:
    """The reference: every non-finite float null, tuples as lists, walked by hand."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _nulled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulled(v) for v in value]
    return value


@given(records)
def test_every_record_is_one_line_of_strict_json_with_non_finite_numbers_as_null(batch: list[dict[str, Any]]) -> None:
    lines = to_json_lines(batch).decode().splitlines()
    assert len(lines) == len(batch)
    for line, record in zip(lines, batch, strict=True):
        parsed = json.loads(line, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
        assert parsed == json.loads(json.dumps(_nulled(record)))
        assert line == json.dumps(_nulled(record), separators=(",", ":"), sort_keys=True)
