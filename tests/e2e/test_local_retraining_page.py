"""`traderai local` archives and retrains on the replay clock, and the page shows the decision (Chromium)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any


def _retraining(stack: Any) -> dict[str, Any]:
    with urllib.request.urlopen(f"{stack.http_url}/_local/retraining", timeout=5) as reply:
        return json.loads(reply.read())


def test_the_page_shows_a_promotion_or_a_kept_champion_with_its_reasons(start_local, chromium) -> None:
    # One market, a replay starting just before midnight, a retraining due after 0.005 replayed days (7 min):
    # the archive run at 00:10 comes ~2 s in and the retraining state machine right after it.
    stack = start_local("--markets", "BTC/USDT", "--start", "2025-04-06T23:59:00Z", "--retrain-every", "0.005",
                        "--no-track", "--no-auth")
    deadline = time.monotonic() + 240
    runs: list[dict[str, Any]] = []
    while not runs and time.monotonic() < deadline:
        runs = _retraining(stack)["runs"]
        time.sleep(1)
    assert runs, "no retraining within 240 s:\n" + stack.output()
    (run,) = runs
    assert run["time"] == "2025-04-07T00:10:00Z" and run["error"] is None
    assert run["states"][:3] == ["Train", "Evaluate", "PromoteOrKeep"] and run["states"][-1] == "Notify"
    (record,) = run["records"]
    assert record["outcome"] in ("promoted", "kept") and record["reasons"]

    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    page.goto(stack.http_url + "/", wait_until="domcontentloaded")
    item = page.locator(f'#retraining-runs li[data-outcome="{record["outcome"]}"]')
    item.wait_for(timeout=10_000)
    text = item.inner_text()
    assert "BTC/USDT" in text and record["outcome"] in text and f"serving {record['serving_model_id']}" in text
    assert record["reasons"][0][:40] in text
    if record["challenger_log_loss"] is not None:
        assert f"log loss {record['challenger_log_loss']:.4f} vs {record['champion_log_loss']:.4f}" in text
