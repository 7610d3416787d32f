"""ApiFunction under moto: the real handler, the events/ files, tables built from the template."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from traderai import wiring
from traderai.adapters.signal_store import SignalStore
from traderai.contracts import Signal
from traderai.testing.handlers import REPO_ROOT, FakeLambdaContext, load_event, load_handler
from traderai.testing.serving import ServingTables

OPENAPI_DOC = REPO_ROOT / "docs" / "openapi.json"
Reply = dict[str, Any]


def make_signal(n: int, symbol: str = "BTC/USDT", side: str = "LONG", status: str = "ACTIVE") -> Signal:
    """The n-th signal of a test history: one per minute from 2026-11-01 00:00, later = larger n."""
    day, minute = divmod(n, 1440)
    created = f"2026-11-{1 + day:02d}T{minute // 60:02d}:{minute % 60:02d}:00Z"
    return Signal(
        signal_id=f"signal_{symbol.replace('/', '_')}_{n:06d}", symbol=symbol, side=side,
        entry_price=97000.0, tp1_price=99900.0, tp2_price=102075.0, tp3_price=105700.0, sl_price=95550.0,
        leverage=20, position_size_usd=1000.0, quantity=0.01, gross_profit_pct=5.730241, costs_pct=0.32,
        expected_net_profit_pct=5.410241, net_risk_reward_ratio=2.981103, confidence=0.71, probability=0.71,
        risk_reward_ratio=3.833333, status=status, created_at=created, expires_at="2026-12-31T00:00:00Z",
        model_id="BTC_USDT_15m_20261101_000000", batch_id="BTC_USDT_15m_20261101_000000_20261125_104500",
        exchange="binance", timeframe="15m", atr=1450.0, candle_time=created)


@pytest.fixture
def api(serving: ServingTables, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in serving.environment("ApiFunction").items():
        monkeypatch.setenv(name, value)
    wiring.clear()
    yield load_handler("api")
    wiring.clear()


@pytest.fixture
def store(serving: ServingTables) -> SignalStore:
    return SignalStore(serving.signals_table)


@pytest.fixture
def call(api: Any) -> Callable[..., Reply]:
    """Invoke the handler with an events/ file, optionally with other query parameters."""

    def invoke(event_file: str, query: dict[str, str] | None = None, drop_query: bool = False) -> Reply:
        event = load_event(event_file)
        if drop_query:
            event.pop("queryStringParameters", None)
        if query is not None:
            event["queryStringParameters"] = query
            event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
        reply = api.handler(event, FakeLambdaContext())
        return reply | {"json": json.loads(reply["body"])}

    return invoke


@pytest.fixture
def history(store: SignalStore) -> list[Signal]:
    """40 signals over three markets, both sides and two statuses, written through the adapter."""
    symbols = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    signals = [make_signal(n, symbols[n % 3], "LONG" if n % 2 else "SHORT", "ACTIVE" if n % 5 else "EXPIRED")
               for n in range(40)]
    for signal in signals:
        assert store.put_new(signal)
    return signals


def newest_first(signals: list[Signal]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in sorted(signals, key=lambda s: s.created_at, reverse=True)]


# ---------------------------------------------------------------- GET /signals

def test_sample_event_lists_matching_signals_newest_first(call: Callable[..., Reply], history: list[Signal]) -> None:
    # Given the sample event: symbol BTC_USDT, side long, ACTIVE, since 2026-11-01, limit 20
    reply = call("api_get_signals.json")
    # Then only BTC/USDT LONG ACTIVE signals come back, newest first, as the signal contract
    expected = [s for s in history if (s.symbol, s.side, s.status) == ("BTC/USDT", "LONG", "ACTIVE")]
    assert reply["statusCode"] == 200
    assert reply["json"] == {"items": newest_first(expected), "next_token": None}


def test_numbers_are_json_numbers(call: Callable[..., Reply], history: list[Signal]) -> None:
    item = call("api_get_signals_all.json")["json"]["items"][0]
    assert isinstance(item["entry_price"], float) and isinstance(item["leverage"], int)
    assert '"entry_price":97000.0' in call("api_get_signals_all.json")["body"]


@pytest.mark.parametrize("spelling", ["BTC/USDT", "BTC_USDT", "BTC-USDT", "btc-usdt"])
def test_symbol_accepts_every_spelling(call: Callable[..., Reply], history: list[Signal], spelling: str) -> None:
    items = call("api_get_signals.json", {"symbol": spelling})["json"]["items"]
    assert items == newest_first([s for s in history if s.symbol == "BTC/USDT"])


@pytest.mark.parametrize(("query", "keep"), [
    ({"status": "EXPIRED"}, lambda s: s.status == "EXPIRED"),
    ({"side": "SHORT", "status": "ACTIVE"}, lambda s: s.side == "SHORT" and s.status == "ACTIVE"),
    ({"since": "2026-11-01T00:10:00Z", "until": "2026-11-01T00:20:00Z"},
     lambda s: "2026-11-01T00:10:00Z" <= s.created_at <= "2026-11-01T00:20:00Z"),
    ({"symbol": "ETH/USDT", "until": "2026-11-01T00:15:00+00:00"},
     lambda s: s.symbol == "ETH/USDT" and s.created_at <= "2026-11-01T00:15:00Z"),
    ({"since": "2026-11-01T01:10:00+01:00"}, lambda s: s.created_at >= "2026-11-01T00:10:00Z"),
    ({"since": "2026-11-01T00:10:00.5Z"}, lambda s: s.created_at >= "2026-11-01T00:10:01Z"),
])
def test_filters(call: Callable[..., Reply], history: list[Signal], query: dict[str, str],
                 keep: Callable[[Signal], bool]) -> None:
    reply = call("api_get_signals_all.json", query | {"limit": "200"})
    assert reply["json"]["items"] == newest_first([s for s in history if keep(s)])


@pytest.mark.parametrize("query", [
    {"since": "2026-11-01T00:10:00.2Z", "until": "2026-11-01T00:10:00.7Z"},
    {"symbol": "BTC/USDT", "since": "2026-11-01T00:10:00.2Z", "until": "2026-11-01T00:10:00.7Z"},
])
def test_a_window_inside_one_second_is_an_empty_page_not_an_error(call: Callable[..., Reply],
                                                                  history: list[Signal],
                                                                  query: dict[str, str], between_rule: None) -> None:
    # Given DynamoDB's rule (moto skips it): a BETWEEN whose lower bound is above its upper one is a
    # ValidationException, and since <= until but both within one stored second (since rounds up past until)
    reply = call("api_get_signals_all.json", query)
    # Then no stored second lies in the window: an empty page, not DynamoDB's BETWEEN error as a 500
    assert (reply["statusCode"], reply["json"]) == (200, {"items": [], "next_token": None})


@pytest.mark.parametrize(("query", "everything"), [
    ({"since": "0001-01-01T00:00:00+01:00"}, True),  # the year 0 in UTC: before every stored time
    ({"until": "9999-12-31T23:00:00-05:00"}, True),  # the year 10000 in UTC: after every stored time
    ({"since": "9999-12-31T23:59:59.5Z"}, False),  # rounded up past the year 9999: nothing is that late
])
def test_a_valid_time_beyond_what_utc_can_hold_is_the_end_of_the_range(
    call: Callable[..., Reply], history: list[Signal], query: dict[str, str], everything: bool
) -> None:
    reply = call("api_get_signals_all.json", {**query, "limit": "200"})
    assert reply["statusCode"] == 200
    assert len(reply["json"]["items"]) == (len(history) if everything else 0)


@pytest.mark.parametrize("value", [
    "0.5",  # a bare number is not a time (pydantic's datetime would read it as 1970-01-01T00:00:00.5Z)
    "1744034400",
    "2025-04-07T14:00:00",  # no zone: refused rather than guessed
    "2025-04-07 14:00:00Z",
    "2025-02-30T00:00:00Z",  # the right shape, not a day
    "2025-04-07T24:00:00Z",
])
@pytest.mark.parametrize("name", ["since", "until"])
def test_a_time_that_is_not_rfc_3339_is_a_400_naming_the_parameter(
    call: Callable[..., Reply], name: str, value: str
) -> None:
    reply = call("api_get_signals_all.json", {name: value})
    assert reply["statusCode"] == 400 and reply["json"]["error"] == "bad_request"
    assert reply["json"]["message"].startswith(f"{name}:")


@pytest.mark.parametrize(("query", "limit"), [({}, 7), ({"side": "LONG"}, 3), ({"symbol": "SOL/USDT"}, 4),
                                              ({"status": "ACTIVE", "side": "SHORT"}, 5)])
def test_pages_walk_every_match_exactly_once(call: Callable[..., Reply], history: list[Signal],
                                             query: dict[str, str], limit: int) -> None:
    seen: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(50):
        paging = {"limit": str(limit)} | ({"next_token": token} if token else {})
        page = call("api_get_signals_all.json", query | paging)
        assert page["statusCode"] == 200 and len(page["json"]["items"]) <= limit
        seen += page["json"]["items"]
        token = page["json"]["next_token"]
        if token is None:
            break
    reference = call("api_get_signals_all.json", query | {"limit": "200"})["json"]["items"]
    assert seen == reference and len({item["signal_id"] for item in seen}) == len(seen)


def test_last_full_page_has_no_next_token(call: Callable[..., Reply], store: SignalStore) -> None:
    for n in range(10):
        store.put_new(make_signal(n))
    first = call("api_get_signals_all.json", {"limit": "5"})["json"]
    second = call("api_get_signals_all.json", {"limit": "5", "next_token": first["next_token"]})["json"]
    assert len(second["items"]) == 5 and second["next_token"] is None


def test_empty_table_gives_an_empty_page(call: Callable[..., Reply]) -> None:
    assert call("api_get_signals_all.json")["json"] == {"items": [], "next_token": None}


# ---------------------------------------------------------------- next_token is tamper-evident

def _first_token(call: Callable[..., Reply], query: dict[str, str]) -> str:
    token = call("api_get_signals_all.json", query | {"limit": "2"})["json"]["next_token"]
    assert token
    return token


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]


@pytest.mark.parametrize("position", [0, 5, 20, -30, -1])
def test_an_altered_token_is_refused(call: Callable[..., Reply], history: list[Signal], position: int) -> None:
    token = _first_token(call, {"symbol": "BTC/USDT"})
    reply = call("api_get_signals_all.json", {"symbol": "BTC/USDT", "limit": "2",
                                              "next_token": _flip(token, position % len(token))})
    assert reply["statusCode"] == 400
    assert reply["json"]["error"] == "invalid_next_token"


def test_a_token_forged_with_another_key_is_refused(call: Callable[..., Reply], history: list[Signal]) -> None:
    from traderai.adapters.signal_store import SignalFilters
    from traderai.services.api import PageTokens

    forged = PageTokens("another secret that is long enough!!").issue(
        SignalFilters(), {"signal_id": "x", "feed": "ALL", "created_at": "2026-11-01T00:00:00Z"})
    reply = call("api_get_signals_all.json", {"next_token": forged})
    assert (reply["statusCode"], reply["json"]["error"]) == (400, "invalid_next_token")


def test_a_token_is_bound_to_its_filters(call: Callable[..., Reply], history: list[Signal]) -> None:
    token = _first_token(call, {"symbol": "BTC/USDT"})
    reply = call("api_get_signals_all.json", {"symbol": "ETH/USDT", "next_token": token})
    assert reply["statusCode"] == 400
    assert "other filters" in reply["json"]["message"]


# ---------------------------------------------------------------- ?tradeable= (issue 12)

@pytest.fixture
def mixed(store: SignalStore) -> dict[str, list[Signal]]:
    """30 BTC/ETH signals: every third paper, every third tradeable, every third stored before the field."""
    kinds: dict[str, list[Signal]] = {"paper": [], "tradeable": [], "legacy": []}
    for n in range(30):
        signal = make_signal(n, ("BTC/USDT", "ETH/USDT")[n % 2])
        kind = ("paper", "tradeable", "legacy")[n % 3]
        if kind != "legacy":
            signal = dataclasses.replace(signal, tradeable=kind == "tradeable", expected_value_pct=0.1,
                                         paper_reasons=("no_proven_edge",) if kind == "paper" else ())
        kinds[kind].append(signal)
        assert store.put_new(signal)
    return kinds


def test_tradeable_filters_paper_signals_in_one_query(call: Callable[..., Reply], mixed: dict[str, list[Signal]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from pynamodb.connection.base import Connection

    queries: list[str] = []
    original = Connection.query

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        queries.append(kwargs.get("index_name") or "")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "query", counting)
    paper = call("api_get_signals_paper.json", {"tradeable": "false", "limit": "200"})["json"]
    assert paper == {"items": newest_first(mixed["paper"]), "next_token": None}
    assert queries == ["by_time"]
    # true: tradeable ones, and those stored before the field existed (they were published as tradeable)
    tradeable = call("api_get_signals_all.json", {"tradeable": "true", "limit": "200"})["json"]["items"]
    assert tradeable == newest_first(mixed["tradeable"] + mixed["legacy"])
    btc = call("api_get_signals_all.json", {"tradeable": "true", "symbol": "BTC/USDT", "limit": "200"})["json"]
    assert btc["items"] == newest_first([s for s in mixed["tradeable"] + mixed["legacy"] if s.symbol == "BTC/USDT"])
    assert len(queries) == 3


def test_tradeable_pages_walk_every_paper_signal_once(call: Callable[..., Reply],
                                                      mixed: dict[str, list[Signal]]) -> None:
    seen: list[str] = []
    query = {"tradeable": "false", "limit": "4"}
    while True:
        page = call("api_get_signals_all.json", query)["json"]
        seen += [item["signal_id"] for item in page["items"]]
        if not page["next_token"]:
            break
        query = {"tradeable": "false", "limit": "4", "next_token": page["next_token"]}
    assert sorted(seen) == sorted(s.signal_id for s in mixed["paper"])
    token = _first_token(call, {"tradeable": "false", "limit": "4"})
    assert call("api_get_signals_all.json", {"tradeable": "true", "next_token": token})["statusCode"] == 400


# ---------------------------------------------------------------- validation: 400 with a useful message

@pytest.mark.parametrize(("query", "field", "says"), [
    ({"limit": "0"}, "limit", "greater than or equal to 1"),
    ({"limit": "201"}, "limit", "less than or equal to 200"),
    ({"limit": "ten"}, "limit", "valid integer"),
    ({"side": "UP"}, "side", "'LONG' or 'SHORT'"),
    ({"status": "OPEN"}, "status", "'ACTIVE'"),
    ({"since": "yesterday"}, "since", "RFC 3339 date-time"),
    ({"until": "2026-11-01T00:00:00"}, "until", "with a time zone"),
    ({"symbol": "BTC"}, "symbol", "BASE/QUOTE"),
    ({"symbol": "BTC/USDT; DROP TABLE"}, "symbol", "BASE/QUOTE"),
    ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "since", "after until"),
    ({"symbl": "BTC/USDT"}, "symbl", "unknown query parameter"),
    ({"next_token": "not-a-token"}, "next_token", "not a token"),
    ({"next_token": "e30." + "A" * 27}, "next_token", "not issued by this API"),  # the right shape, unsigned
    ({"next_token": "x" * 3000}, "next_token", "at most 2048"),
    ({"tradeable": "perhaps"}, "tradeable", "valid boolean"),
])
def test_bad_parameters_are_400_naming_the_parameter(call: Callable[..., Reply], query: dict[str, str],
                                                     field: str, says: str) -> None:
    reply = call("api_get_signals_all.json", query)
    assert reply["statusCode"] == 400
    assert reply["headers"]["Content-Type"] == "application/json"
    assert reply["json"]["error"] in ("bad_request", "invalid_next_token")
    assert field in reply["json"]["message"] and says in reply["json"]["message"]


def test_bad_limit_sample_event(call: Callable[..., Reply]) -> None:
    reply = call("api_get_signals_bad_limit.json")
    assert reply["statusCode"] == 400
    assert reply["json"]["details"] == [{"field": "limit", "message": "Input should be less than or equal to 200"}]


# ---------------------------------------------------------------- GET /signals/{id}, /health, 404s

def test_get_one_signal(call: Callable[..., Reply], store: SignalStore) -> None:
    signal = make_signal(7)
    store.put_new(signal)
    event = load_event("api_get_signal_by_id.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/signals/{signal.signal_id}"
    event["pathParameters"] = {"signal_id": signal.signal_id}
    reply = load_handler("api").handler(event, FakeLambdaContext())
    assert reply["statusCode"] == 200 and json.loads(reply["body"]) == signal.to_dict()


def test_unknown_signal_is_a_json_404(call: Callable[..., Reply]) -> None:
    reply = call("api_get_signal_not_found.json")
    assert reply["statusCode"] == 404
    assert reply["json"] == {"error": "not_found", "message": "signal 'signal_BTC_USDT_ffffffffffff' not found"}


def test_sample_get_by_id_event_is_a_404_on_an_empty_table(call: Callable[..., Reply]) -> None:
    assert call("api_get_signal_by_id.json")["statusCode"] == 404


def test_malformed_signal_id_is_400(api: Any) -> None:
    event = load_event("api_get_signal_by_id.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/signals/bad%20id"
    reply = api.handler(event, FakeLambdaContext())
    assert reply["statusCode"] == 400 and "signal_id" in json.loads(reply["body"])["message"]


def test_unknown_route_is_a_json_404(api: Any) -> None:
    event = load_event("api_health.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/nope"
    reply = api.handler(event, FakeLambdaContext())
    assert reply["statusCode"] == 404 and json.loads(reply["body"])["error"] == "not_found"


def test_health(call: Callable[..., Reply]) -> None:
    assert call("api_health.json")["json"]["status"] == "ok"


def test_missing_token_secret_fails_naming_it(call: Callable[..., Reply], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKEN_SECRET")
    wiring.clear()
    reply = call("api_get_signals_all.json")
    assert reply["statusCode"] == 500  # a deployment error: logged with TOKEN_SECRET's name, not leaked


# ---------------------------------------------------------------- OpenAPI

def test_openapi_is_served_and_the_repo_copy_is_up_to_date(call: Callable[..., Reply]) -> None:
    served = call("api_openapi.json")["json"]
    assert set(served["paths"]) >= {"/signals", "/signals/{signal_id}", "/health"}
    assert json.loads(Path(OPENAPI_DOC).read_text()) == served, (
        "docs/openapi.json is stale: run `python -m traderai.testing.openapi_doc`")


def test_the_document_is_the_same_after_the_container_served_other_routes(call: Callable[..., Reply],
                                                                          history: list[Signal]) -> None:
    """The reply models build their validators at first use and the chart's route joins at the first GET
    /openapi.json: a warm container that served every route first still serves the same document."""
    for event, status in (("api_get_signals.json", 200), ("api_get_performance.json", 200), ("api_health.json", 200),
                          ("api_get_signals_bad_limit.json", 400), ("api_get_signal_not_found.json", 404)):
        assert call(event)["statusCode"] == status, event
    served = call("api_openapi.json")["json"]
    assert json.loads(Path(OPENAPI_DOC).read_text()) == served
    assert call("api_openapi.json")["json"] == served
    assert call("api_get_signals.json")["statusCode"] == 200  # and the routes still answer after it


# ---------------------------------------------------------------- Query, never Scan: 10,000 items

@pytest.mark.slow
def test_a_page_reads_at_most_limit_plus_one_items_of_10000(call: Callable[..., Reply], store: SignalStore) -> None:
    # Given 10,000 signals over four markets
    symbols = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
    with store._model.batch_write() as batch:
        for n in range(10_000):
            status = "ACTIVE" if n % 50 == 0 else "EXPIRED"
            batch.save(store._model(**make_signal(n, symbols[n % 4], ("LONG", "SHORT")[n % 3 == 0], status)
                                    .to_dict(), feed="ALL"))
    # When pages are read with every kind of filter, every DynamoDB call is counted
    calls: list[tuple[str, int | None]] = []
    client = wiring.signal_store()._model._get_connection().connection.client
    client.meta.events.register("after-call.dynamodb",
                                lambda model, parsed, **_: calls.append((model.name, parsed.get("ScannedCount"))))
    queries = [{}, {"symbol": "ETH/USDT", "status": "ACTIVE"}, {"status": "ACTIVE", "side": "SHORT"},
               {"since": "2026-11-03T00:00:00Z", "until": "2026-11-04T00:00:00Z"}]
    for query in queries:
        for limit in (1, 200):
            token = None
            for _ in range(2):
                page = call("api_get_signals_all.json",
                            query | {"limit": str(limit)} | ({"next_token": token} if token else {}))
                assert page["statusCode"] == 200
                token = page["json"]["next_token"]
                # Then each page is exactly one Query that read at most limit + 1 items
                assert calls[-1][0] == "Query" and calls[-1][1] <= limit + 1
                if token is None:
                    break
    assert {name for name, _ in calls} == {"Query"}  # never a Scan
