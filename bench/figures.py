"""What every benchmark hands back to `bench/run.py`: figures with a target and a verdict.

A benchmark script prints its figures for people and, given `--json PATH`, writes them for the
runner, which puts every script's figures into one table in `bench/RESULTS.md`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

PASS, MISS, INFO, PENDING = "meets", "MISSES", "info", "pending"


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the results table: what was measured, against which target, with what verdict."""

    section: str
    figure: str
    measured: str
    target: str = ""
    verdict: str = INFO
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def verdict(ok: bool) -> str:
    """`meets` or `MISSES`."""
    return PASS if ok else MISS


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (`share` in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def emit(figures: Sequence[Figure], json_path: Path | None) -> None:
    """Print the figures as a small table; also write them as JSON when the runner asked for it."""
    width = max((len(f.figure) for f in figures), default=10)
    for f in figures:
        target = f"  (target {f.target})" if f.target else ""
        print(f"  {f.figure:<{width}}  {f.measured}{target}  {f.verdict}{'  - ' + f.note if f.note else ''}")
    if json_path is not None:
        json_path.write_text(json.dumps([f.to_dict() for f in figures], indent=1))
