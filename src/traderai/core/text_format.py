"""Signals as the plain text that signal channels post (Telegram/Discord style), and their follow-ups.

    BTC/USDT LONG x20
    Expected value: -0.62% (P(stop) 61%)
    PAPER, not a trade: expected value below the minimum, no proven edge
    Entry: 62800
    Targets:
    1) 64200
    2) 65300
    3) 67000
    Stop: 62100
    Best case if every target fills: +3.79%

The post leads with what the signal is worth in expectation and how likely the stop is; the seed's
`expected_net_profit_pct` is printed last and labelled for what it is, the best case. A paper signal says
so, with its reasons, on the line after.

Pure: a Signal in, a string out. Prices are printed as stored (already on the market's tick grid),
without trailing zeros, never in scientific notation.
"""

from __future__ import annotations

from traderai.contracts import ClosedReason, PaperReason, Signal, SignalStatus

_STATUS_WORDS = {
    SignalStatus.TP1_HIT: "TP1 hit ✅",
    SignalStatus.TP2_HIT: "TP2 hit ✅",
    SignalStatus.TP3_HIT: "All targets hit ✅",
    SignalStatus.STOPPED: "Stopped out ❌",
    SignalStatus.EXPIRED: "Expired ⌛",
}
_UNPRICED_WORDS = "Expired ⌛ without market data (rest unpriced)"  # the % is then that of the exits taken
PAPER_WORDS = {
    PaperReason.NEGATIVE_EXPECTED_VALUE: "expected value below the minimum",
    PaperReason.NO_PROVEN_EDGE: "no proven edge",
    PaperReason.PROTECTION_STOPLOSS_GUARD: "market locked after a run of stops",
    PaperReason.PROTECTION_LOW_PROFIT: "market locked for low recent profit",
}


def format_price(price: float) -> str:
    """62800.0 -> "62800", 0.000123 -> "0.000123", 62812.37 -> "62812.37" (up to 8 decimals)."""
    text = f"{price:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def format_duration(seconds: float) -> str:
    """Time in trade, coarse as channels write it: 45m, 2h 15m, 1d 3h."""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    return f"{mins}m"


def expectation_text(signal: Signal) -> str:
    """"Expected value: -0.62% (P(stop) 61%)", or why there is none."""
    if signal.expected_value_pct is None:
        return "Expected value: unknown (no outcome model for this signal)"
    text = f"Expected value: {signal.expected_value_pct:+.2f}%"
    stop = (signal.outcome_probabilities or {}).get("stop")
    return text + (f" (P(stop) {stop:.0%})" if stop is not None else "")


def tradeable_text(signal: Signal) -> str | None:
    """"PAPER, not a trade: <reasons>" for a paper signal, "Tradeable: ..." if it passed; None before the gate."""
    if signal.tradeable is None:
        return None
    if signal.tradeable:
        return "Tradeable: positive expected value, edge proven out of sample"
    words = [PAPER_WORDS.get(reason, reason) for reason in (signal.paper_reasons or ())]  # type: ignore[call-overload]
    return "PAPER, not a trade" + (f": {', '.join(words)}" if words else "")


def signal_text(signal: Signal) -> str:
    """The channel post of a signal; once it has moved on, a status line is appended."""
    verdict = tradeable_text(signal)
    lines = [
        f"{signal.symbol} {signal.side} x{signal.leverage}",
        expectation_text(signal),
        *([verdict] if verdict else []),
        f"Entry: {format_price(signal.entry_price)}",
        "Targets:",
        *(f"{n}) {format_price(price)}" for n, price in
          enumerate((signal.tp1_price, signal.tp2_price, signal.tp3_price), start=1)),
        f"Stop: {format_price(signal.sl_price)}",
        f"Best case if every target fills: {signal.expected_net_profit_pct:+.2f}%",
    ]
    status_line = status_text(signal)
    if status_line:
        lines.append(status_line)
    return "\n".join(lines)


def status_text(signal: Signal) -> str | None:
    """"TP1 hit ✅ +1.30% after 2h 15m" for a signal that has moved on; None while ACTIVE."""
    words = _STATUS_WORDS.get(SignalStatus(signal.status))
    if signal.closed_reason == ClosedReason.NO_MARKET_DATA:
        words = _UNPRICED_WORDS
    if words is None:
        return None
    parts = [words]
    if signal.realised_net_pct is not None:
        parts.append(f"{signal.realised_net_pct:+.2f}%")
    if signal.time_in_trade_seconds is not None:
        parts.append(f"after {format_duration(signal.time_in_trade_seconds)}")
    return " ".join(parts)
