"""The Signals table keeps issue 12's fields (expected value, paper flag and reasons) and old items still load."""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3
import pytest

from traderai.adapters.signal_store import SignalStore, signal_from_item
from traderai.contracts import OUTCOMES, PaperReason
from traderai.testing.handlers import load_event

NEW_ITEM = load_event("broadcast_insert.json")["Records"][0]["dynamodb"]["NewImage"]
ISSUE_12_FIELDS = ("expected_value_pct", "expected_r", "outcome_probabilities", "tradeable", "paper_reasons")
OLD_ITEM = {name: value for name, value in NEW_ITEM.items() if name not in ISSUE_12_FIELDS}


@pytest.fixture
def store(aws: Any) -> SignalStore:
    return SignalStore(aws.signals_table)


def test_a_paper_signal_reads_back_equal_with_its_numbers(store: SignalStore) -> None:
    old = signal_from_item(OLD_ITEM)
    paper = dataclasses.replace(
        old, signal_id="signal_paper", expected_value_pct=-0.3125, expected_r=-0.2367, tradeable=False,
        outcome_probabilities=dict(zip(OUTCOMES, (0.61, 0.12, 0.05, 0.04, 0.18), strict=True)),
        paper_reasons=(PaperReason.NEGATIVE_EXPECTED_VALUE.value, PaperReason.NO_PROVEN_EDGE.value))
    assert store.put_new(paper)
    assert store.get("signal_paper") == paper
    raw = boto3.client("dynamodb").get_item(TableName=store.table_name, Key={"signal_id": {"S": "signal_paper"}})
    item = raw["Item"]
    assert item["tradeable"] == {"BOOL": False}
    assert item["paper_reasons"] == {"L": [{"S": "negative_expected_value"}, {"S": "no_proven_edge"}]}
    assert item["outcome_probabilities"]["M"]["stop"] == {"N": "0.61"}
    assert signal_from_item(item) == paper  # a stream image decodes the same


def test_the_sample_stream_images_carry_the_new_fields() -> None:
    tradeable = signal_from_item(NEW_ITEM)
    assert tradeable.tradeable is True and tradeable.paper_reasons == () and tradeable.expected_value_pct > 0
    paper = signal_from_item(load_event("broadcast_insert_paper.json")["Records"][0]["dynamodb"]["NewImage"])
    assert paper.tradeable is False and paper.paper_reasons == ("negative_expected_value", "no_proven_edge")
    assert paper.outcome_probabilities is not None and sum(paper.outcome_probabilities.values()) == 1.0


def test_an_item_stored_before_issue_12_loads_as_tradeable(store: SignalStore) -> None:
    old = signal_from_item(OLD_ITEM)
    assert "tradeable" not in OLD_ITEM and old.tradeable is None and old.is_tradeable
    assert store.put_new(old)
    assert store.get(old.signal_id) == old
