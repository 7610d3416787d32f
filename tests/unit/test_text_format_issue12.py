"""The channel post leads with the expected value and P(stop), labels the best case, and says paper."""

from __future__ import annotations

from traderai.adapters.signal_store import signal_from_item
from traderai.core.text_format import signal_text
from traderai.testing.handlers import load_event


def _image(event: str):
    return signal_from_item(load_event(event)["Records"][0]["dynamodb"]["NewImage"])


def test_a_paper_post_leads_with_ev_and_p_stop_and_says_paper_with_its_reasons() -> None:
    paper = _image("broadcast_insert_paper.json")
    lines = signal_text(paper).splitlines()
    assert lines[:3] == ["BTC/USDT LONG x20", "Expected value: -0.62% (P(stop) 61%)",
                         "PAPER, not a trade: expected value below the minimum, no proven edge"]
    assert lines[3] == "Entry: 97000"
    assert lines[-1] == "Best case if every target fills: +5.41%"  # expected_net_profit_pct, labelled


def test_a_tradeable_post_says_so() -> None:
    tradeable = _image("broadcast_insert.json")
    lines = signal_text(tradeable).splitlines()
    assert lines[1:3] == ["Expected value: +0.41% (P(stop) 38%)",
                          "Tradeable: positive expected value, edge proven out of sample"]
