"""Scale-free technical features over closed candles: one code path for training and inference.

Everything here is numpy only (the predict Lambda carries no scipy/pandas) and vectorised. The
recursive smoothers (Wilder, EMA) run as a blocked linear recurrence: inside a block of 64
candles the recurrence is one small matrix product, only the carry between blocks is a Python
loop, so 100k candles cost a few milliseconds instead of a 100k-step loop.

Indicators that have a classic definition (RSI, MACD, ATR) follow TA-Lib's seeding exactly, so
the unit tests can pin them against TA-Lib. Prices enter the feature matrix only as ratios
(divided by the close), so one model transfers across markets and price levels.

Gaps in the candles (exchange halts) are not filled: rows are consecutive closed candles, and a
gap only shows as a longer return across it. Flat stretches (zero range, zero volume) yield
neutral values (RSI 50, %B 0.5, volume z 0) rather than a division by zero.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from traderai.contracts import Candles

FEATURE_NAMES: tuple[str, ...] = (
    "rsi_14",  # Wilder RSI, 0..100
    "macd_rel",  # MACD(12,26,9) line / close
    "macd_signal_rel",  # MACD signal line / close
    "macd_hist_rel",  # MACD histogram / close
    "atr_rel",  # Wilder ATR(14) / close
    "logret_1",  # log(close_t / close_{t-k}) for k = 1, 3, 6, 12, 24 candles
    "logret_3",
    "logret_6",
    "logret_12",
    "logret_24",
    "rvol_24",  # realised volatility: RMS of 1-candle log returns over 24 / 96 candles
    "rvol_96",
    "bb_pctb_20",  # Bollinger %B(20, 2): 0 at the lower band, 1 at the upper band
    "volume_z_96",  # z-score of volume against the previous-96-candle window (incl. t), clipped
    "dist_ema_20",  # close / EMA(20) - 1
    "dist_ema_50",  # close / EMA(50) - 1
    "dist_sma_200",  # close / SMA(200) - 1 (SMA, not EMA: see WARMUP_CANDLES)
    "hl_range_rel",  # (high - low) / close of the candle
)

RSI_PERIOD = 14
ATR_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
RETURN_LAGS = (1, 3, 6, 12, 24)
RVOL_WINDOWS = (24, 96)
BOLLINGER_PERIOD, BOLLINGER_STDS = 20, 2.0
VOLUME_WINDOW = 96
VOLUME_Z_CLIP = 10.0
EMA_PERIODS = (20, 50)
SMA_LONG = 200

FIRST_COMPLETE_ROW = SMA_LONG - 1
"""Rows before this index carry NaN in at least one column (the 200-candle SMA needs 200 closes)."""

WARMUP_CANDLES = 400
"""Candles a window must hold so its LAST row equals the full-history value (|diff| <= 1e-6).

The recursive smoothers (EMA 50 above all) remember their seed; after 400 candles the seed's
weight is below 1e-7, so a predict function that fetches this many candles computes the same
features the model was trained on. That is also why the long trend is an SMA(200): an EMA(200)
would need ~1,400 candles to forget its seed. A unit test pins this on real candles.
"""
warmup_candles = WARMUP_CANDLES  # the name used in the design brief

_BLOCK = 64


def _linear_recurrence(inputs: np.ndarray, decay: float, initial: float) -> np.ndarray:
    """y[i] = decay * y[i-1] + inputs[i], y[-1] = initial; blocked so numpy does the work.

    All coefficients are powers of `decay` <= 1, so nothing overflows (unlike the closed form
    with decay**-i); results equal the sequential loop to rounding (~1e-15 relative).
    """
    n = inputs.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.float64)
    blocks = -(-n // _BLOCK)
    padded = np.zeros(blocks * _BLOCK, dtype=np.float64)
    padded[:n] = inputs
    within_t, carry_in = _block_weights(float(decay))
    local = padded.reshape(blocks, _BLOCK) @ within_t
    block_decay = decay**_BLOCK
    carries = np.empty(blocks, dtype=np.float64)
    carry = float(initial)
    ends = local[:, -1].tolist()
    for b in range(blocks):
        carries[b] = carry
        carry = block_decay * carry + ends[b]
    out = local + carries[:, None] * carry_in[None, :]
    result: np.ndarray = out.reshape(-1)[:n]
    return result


@functools.lru_cache(maxsize=64)
def _block_weights(decay: float) -> tuple[np.ndarray, np.ndarray]:
    """The block matrix (transposed) and the carry's weights of one decay: the same for every market and
    tick (a handful of decays), so computed once per process, not nine times per prediction. Read-only."""
    lags = np.arange(_BLOCK)
    lag_matrix = lags[:, None] - lags[None, :]
    # within[j, k] = decay**(j-k) for k <= j: the contribution of input k to output j of a block.
    within = np.where(lag_matrix >= 0, decay ** np.maximum(lag_matrix, 0), 0.0)
    within_t = np.ascontiguousarray(within.T)
    carry_in = decay ** (lags + 1)
    within_t.flags.writeable = False
    carry_in.flags.writeable = False
    return within_t, carry_in


def _smooth(values: np.ndarray, alpha: float, seed_index: int, seed: float) -> np.ndarray:
    """Exponential smoothing s[t] = alpha*x[t] + (1-alpha)*s[t-1], started at s[seed_index] = seed.

    NaN before `seed_index`; EMA uses alpha = 2/(n+1), Wilder uses alpha = 1/n.
    """
    out = np.full(values.shape[0], np.nan)
    if seed_index >= values.shape[0]:
        return out
    out[seed_index] = seed
    rest = values[seed_index + 1:]
    if rest.shape[0]:
        out[seed_index + 1:] = _linear_recurrence(alpha * rest, 1.0 - alpha, seed)
    return out


def ema(values: np.ndarray, period: int, start: int = 0) -> np.ndarray:
    """TA-Lib EMA: seeded with the SMA of the first `period` values from `start`; NaN before."""
    values = np.asarray(values, dtype=np.float64)
    seed_index = start + period - 1
    if seed_index >= values.shape[0]:
        return np.full(values.shape[0], np.nan)
    return _smooth(values, 2.0 / (period + 1), seed_index, float(values[start:seed_index + 1].mean()))


def sma(values: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average over the last `period` values (NaN before), exact per window."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape[0], np.nan)
    if values.shape[0] >= period:
        out[period - 1:] = sliding_window_view(values, period).mean(axis=1)
    return out


def rsi(close: np.ndarray, period: int = RSI_PERIOD) -> np.ndarray:
    """Wilder RSI as TA-Lib computes it (first value at index `period`); 50 on a flat window."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] <= period:
        return out
    change = np.diff(close)
    gain, loss = np.maximum(change, 0.0), np.maximum(-change, 0.0)
    alpha = 1.0 / period
    avg_gain = _smooth(gain, alpha, period - 1, float(gain[:period].mean()))
    avg_loss = _smooth(loss, alpha, period - 1, float(loss[:period].mean()))
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(total > 0, 100.0 * avg_gain / np.where(total > 0, total, 1.0), 50.0)
    out[period:] = value[period - 1:]
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """True range; NaN at index 0 (no previous close), as TA-Lib."""
    high, low, close = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] > 1:
        prev = close[:-1]
        out[1:] = np.maximum(high[1:] - low[1:], np.maximum(np.abs(high[1:] - prev), np.abs(low[1:] - prev)))
    return out


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = ATR_PERIOD) -> np.ndarray:
    """Wilder ATR in price units, as TA-Lib: SMA of the first `period` true ranges at index `period`."""
    tr = true_range(high, low, close)
    if tr.shape[0] <= period:
        return np.full(tr.shape[0], np.nan)
    return _smooth(tr, 1.0 / period, period, float(tr[1:period + 1].mean()))


def macd(close: np.ndarray, fast: int = MACD_FAST, slow: int = MACD_SLOW,
         signal: int = MACD_SIGNAL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACD line, signal, histogram as TA-Lib: EMAs seeded at index slow-1, output from slow+signal-2."""
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    nan = np.full(n, np.nan)
    first = slow + signal - 2
    if n <= first:
        return nan, nan.copy(), nan.copy()
    fast_ema = ema(close, fast, start=slow - fast)  # TA-Lib seeds the fast EMA on the slow one's last window
    slow_ema = ema(close, slow)
    line = fast_ema - slow_ema
    signal_line = ema(line, signal, start=slow - 1)
    line = np.where(np.arange(n) >= first, line, np.nan)
    return line, signal_line, line - signal_line


def _log_return(close: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] > lag:
        out[lag:] = np.log(close[lag:] / close[:-lag])
    return out


def _rolling_rms(values: np.ndarray, window: int) -> np.ndarray:
    """sqrt(mean(x^2)) over the last `window` values; NaN inputs propagate, NaN before the window."""
    out = np.full(values.shape[0], np.nan)
    if values.shape[0] >= window:
        out[window - 1:] = np.sqrt(np.mean(sliding_window_view(values, window) ** 2, axis=1))
    return out


def _bollinger_pctb(close: np.ndarray, period: int, stds: float) -> np.ndarray:
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] < period:
        return out
    windows = sliding_window_view(close, period)
    mid = windows.mean(axis=1)
    width = 2.0 * stds * windows.std(axis=1)  # population std, as TA-Lib BBANDS
    last = close[period - 1:]
    flat = width <= 1e-12 * np.abs(mid)
    out[period - 1:] = np.where(flat, 0.5, (last - (mid - width / 2)) / np.where(flat, 1.0, width))
    return out


def _volume_z(volume: np.ndarray, window: int) -> np.ndarray:
    out = np.full(volume.shape[0], np.nan)
    if volume.shape[0] < window:
        return out
    windows = sliding_window_view(volume, window)
    mean, std = windows.mean(axis=1), windows.std(axis=1)
    flat = std <= 1e-12 * np.maximum(mean, 1e-300)
    z = (volume[window - 1:] - mean) / np.where(flat, 1.0, std)
    out[window - 1:] = np.clip(np.where(flat, 0.0, z), -VOLUME_Z_CLIP, VOLUME_Z_CLIP)
    return out


def compute_features(candles: Candles) -> np.ndarray:
    """Feature matrix (n, len(FEATURE_NAMES)), float64, row t uses candles <= t only; NaN in warm-up.

    The same function builds the training set (whole history) and the live row (the last row of
    a window of at least WARMUP_CANDLES candles).
    """
    close = np.asarray(candles.close, dtype=np.float64)
    high = np.asarray(candles.high, dtype=np.float64)
    low = np.asarray(candles.low, dtype=np.float64)
    volume = np.asarray(candles.volume, dtype=np.float64)
    n = close.shape[0]
    columns: dict[str, np.ndarray] = {}
    columns["rsi_14"] = rsi(close)
    line, signal_line, hist = macd(close)
    columns["macd_rel"] = line / close
    columns["macd_signal_rel"] = signal_line / close
    columns["macd_hist_rel"] = hist / close
    columns["atr_rel"] = atr(high, low, close) / close
    for lag in RETURN_LAGS:
        columns[f"logret_{lag}"] = _log_return(close, lag)
    one_candle = columns["logret_1"]
    for window in RVOL_WINDOWS:
        # The first return exists at index 1, so the first full window ends at index `window`.
        rms = _rolling_rms(one_candle[1:], window)
        columns[f"rvol_{window}"] = np.concatenate([[np.nan], rms]) if n else rms
    columns["bb_pctb_20"] = _bollinger_pctb(close, BOLLINGER_PERIOD, BOLLINGER_STDS)
    columns["volume_z_96"] = _volume_z(volume, VOLUME_WINDOW)
    for period in EMA_PERIODS:
        columns[f"dist_ema_{period}"] = close / ema(close, period) - 1.0
    columns["dist_sma_200"] = close / sma(close, SMA_LONG) - 1.0
    columns["hl_range_rel"] = (high - low) / close
    matrix = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    for j, name in enumerate(FEATURE_NAMES):
        matrix[:, j] = columns[name]
    return matrix


def latest_features(candles: Candles) -> dict[str, float]:
    """The last row as {name: value}, for the prediction log (NaN if the window is too short)."""
    if len(candles) == 0:
        return {name: float("nan") for name in FEATURE_NAMES}
    row = compute_features(candles.tail(WARMUP_CANDLES))[-1]
    return {name: float(v) for name, v in zip(FEATURE_NAMES, row, strict=True)}
