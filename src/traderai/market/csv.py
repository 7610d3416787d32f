"""Load recorded candles from CSV (gzip or plain): the bundled data set and any exported file.

Format: header `timestamp,open,high,low,close,volume`, `timestamp` = candle OPEN time in UTC
milliseconds, oldest first. numpy only, so the replay source can use it inside a Lambda.
"""

from __future__ import annotations

import gzip
import io
import re
from importlib import resources
from pathlib import Path

import numpy as np

from traderai.contracts import Candles
from traderai.market import BadCandlesError
from traderai.settings import normalize_symbol

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


def symbol_from_file_name(path: str | Path) -> str | None:
    """The market a candle file is named after (`BTC_USDT-15m.csv.gz` -> `BTC/USDT`), or None."""
    match = re.match(r"^([A-Za-z0-9]+)_([A-Za-z0-9]+)-", Path(path).name)
    return f"{match[1].upper()}/{match[2].upper()}" if match else None


def bundled_candles_path(symbol: str, timeframe: str = "15m") -> Path:
    """Path of the candles shipped in the package, e.g. data/candles/BTC_USDT-15m.csv.gz.

    Raises FileNotFoundError naming the markets that are bundled when this one is not.
    """
    base = Path(str(resources.files("traderai") / "data" / "candles"))
    name = f"{normalize_symbol(symbol).replace('/', '_').replace(':', '_')}-{timeframe}.csv.gz"
    path = base / name
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in base.glob("*.csv*"))) or "none"
        raise FileNotFoundError(f"no bundled candles for {symbol} {timeframe} ({name}); bundled: {shipped}")
    return path


def load_candles_csv(path: str | Path, symbol: str, timeframe: str = "15m") -> Candles:
    """Read a candle CSV (gzip detected by its magic bytes, not the name) into validated Candles.

    Rows must be sorted by time without duplicates and have finite, positive prices and
    non-negative volume; anything else raises BadCandlesError naming the file and row. Gaps in
    time (exchange halts) are allowed: they are real and the features cope with them.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    header, _, body = text.partition("\n")
    names = tuple(h.strip().lower() for h in header.strip().split(","))
    if names != COLUMNS:
        raise BadCandlesError(f"{path}: header {header.strip()!r} is not {','.join(COLUMNS)}")
    if not body.strip():
        table = np.empty((0, len(COLUMNS)), dtype=np.float64)
    else:
        try:
            table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as exc:
            raise BadCandlesError(f"{path}: unreadable row ({exc})") from exc
    if table.shape[1] != len(COLUMNS):
        raise BadCandlesError(f"{path}: expected {len(COLUMNS)} columns, got {table.shape[1]}")
    open_time = table[:, 0].astype(np.int64)
    prices, volume = table[:, 1:5], table[:, 5]
    bad = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1) | ~np.isfinite(volume) | (volume < 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise BadCandlesError(f"{path}: row {row + 2} has a non-finite or non-positive price or volume")
    if open_time.shape[0] > 1 and not (np.diff(open_time) > 0).all():
        row = int(np.argmax(np.diff(open_time) <= 0)) + 1
        raise BadCandlesError(f"{path}: row {row + 2} is not after the row before it (unsorted or duplicate)")
    return Candles(symbol=normalize_symbol(symbol), timeframe=timeframe, open_time_ms=open_time,
                   open=np.ascontiguousarray(prices[:, 0]), high=np.ascontiguousarray(prices[:, 1]),
                   low=np.ascontiguousarray(prices[:, 2]), close=np.ascontiguousarray(prices[:, 3]),
                   volume=np.ascontiguousarray(volume))
