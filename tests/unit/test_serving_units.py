"""Pure parts of the serving side: SigV4 signing, page tokens, filters, WebSocket message parsing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials

from traderai.adapters.push import PostResult, Pusher, PushError, SignedPoster, encode, region_of
from traderai.adapters.signal_store import BY_STATUS, BY_SYMBOL, BY_TIME, SignalFilters
from traderai.contracts import SettingsError
from traderai.services.api import BadRequest, InvalidPageToken, PageTokens, signal_filters
from traderai.services.websocket import BadMessage, parse_message, parse_symbols

MOMENT = datetime(2026, 11, 25, 10, 45, 5, tzinfo=UTC)
SECRET = "s" * 40


class _EmptyBody:
    def stream(self, **_: object) -> Iterator[bytes]:
        yield b""


@pytest.mark.parametrize("endpoint", ["https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
                                      "http://127.0.0.1:8765", "https://ws.example.com:8443/stage/"])
@pytest.mark.parametrize("connection_id", ["L0SM9cOFvHcCIhw=", "a+b/c=~x", "plain"])
@pytest.mark.parametrize("token", [None, "session-token"])
def test_signed_request_equals_what_boto3_sends(endpoint: str, connection_id: str, token: str | None) -> None:
    # Given boto3's own post_to_connection, captured just before it would go on the wire
    sent: list[AWSRequest] = []

    def capture(request: AWSRequest, **_: object) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _EmptyBody())

    client = boto3.session.Session().client(
        "apigatewaymanagementapi", endpoint_url=endpoint, region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", aws_session_token=token)
    client.meta.events.register("before-send", capture)
    payload = encode({"type": "signal", "data": {"symbol": "BTC/USDT", "entry_price": 97000.0}})
    client.post_to_connection(ConnectionId=connection_id, Data=payload)
    [request] = sent
    # When the signed poster signs the same request at the same moment
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    poster = SignedPoster(endpoint, region="eu-west-1", credentials=credentials)
    headers = {name: (v.decode() if isinstance(v, bytes) else v) for name, v in request.headers.items()}
    moment = datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    path = poster.path_for(connection_id)
    ours = poster.sign("POST", path, payload, moment)
    # Then the path and the signature are boto3's
    assert path == urlsplit(request.url).path
    assert ours["Authorization"] == headers["Authorization"]
    assert ours.get("x-amz-security-token") == (token and headers["X-Amz-Security-Token"])


def test_region_comes_from_an_execute_api_host() -> None:
    assert region_of("https://abc123.execute-api.ap-southeast-2.amazonaws.com/prod") == "ap-southeast-2"


def test_endpoint_must_be_http() -> None:
    with pytest.raises(ValueError, match="WEBSOCKET_ENDPOINT"):
        SignedPoster("ftp://example.com", region="us-east-1")


class CountingPoster:
    """Answers every post at once: 410 for ids starting with "gone", 500 for "bad", an unexpected
    error for "bug"; counts the posts started."""

    def __init__(self) -> None:
        self.started = 0

    def post(self, connection_id: str, payload: bytes) -> str:
        self.started += 1
        if connection_id.startswith("bug"):
            raise RuntimeError("a bug, not a push failure")
        if connection_id.startswith("bad"):
            raise PushError(connection_id, "HTTP 500")
        return PostResult.GONE if connection_id.startswith("gone") else PostResult.DELIVERED


def test_a_fan_out_holds_a_bounded_window_of_posts_whatever_its_size() -> None:
    poster = CountingPoster()
    pusher = Pusher(poster, max_workers=4)
    posts = pusher.posts((f"c{n}=" for n in range(100_000)), b"{}")
    next(posts)  # the caller reads slowly: the pusher waits for it instead of queueing 100,000 posts
    assert poster.started <= pusher.window == 16
    assert sum(1 for _ in posts) == 100_000 - 1 and poster.started == 100_000


def test_fan_out_reports_each_id_with_its_own_outcome() -> None:
    report = Pusher(CountingPoster(), max_workers=3).fan_out(["a=", "gone-b=", "bad-c=", "d=", "a="], b"{}")
    assert report.delivered == ("a=", "d=") and report.gone == ("gone-b=",) and report.failed == {"bad-c=": "HTTP 500"}


def test_an_unexpected_error_in_a_post_reaches_the_caller_instead_of_hanging_it() -> None:
    with pytest.raises(RuntimeError, match="a bug"):
        Pusher(CountingPoster(), max_workers=2).fan_out([f"c{n}=" for n in range(50)] + ["bug="], b"{}")


# ---------------------------------------------------------------- page tokens

def test_token_round_trip() -> None:
    tokens, filters = PageTokens(SECRET), SignalFilters(symbol="BTC/USDT")
    key = {"signal_id": "signal_1", "symbol": "BTC/USDT", "created_at": "2026-11-01T00:00:00Z"}
    assert tokens.read(tokens.issue(filters, key), filters) == key


@pytest.mark.parametrize("mangle", [lambda t: t[:-1], lambda t: t + "A", lambda t: t.replace(".", ""),
                                    lambda t: "A" + t[1:], lambda t: "", lambda t: "..", lambda t: "€.x"])
def test_mangled_tokens_are_refused(mangle: Callable[[str], str]) -> None:
    tokens, filters = PageTokens(SECRET), SignalFilters()
    token = tokens.issue(filters, {"signal_id": "s", "feed": "ALL", "created_at": "2026-11-01T00:00:00Z"})
    with pytest.raises(InvalidPageToken):
        tokens.read(mangle(token), filters)


def test_token_of_other_filters_is_refused() -> None:
    tokens = PageTokens(SECRET)
    token = tokens.issue(SignalFilters(side="LONG"), {"signal_id": "s", "feed": "ALL", "created_at": "x"})
    with pytest.raises(InvalidPageToken, match="other filters"):
        tokens.read(token, SignalFilters(side="SHORT"))


def test_short_secret_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="TOKEN_SECRET"):
        PageTokens("short")


# ---------------------------------------------------------------- filters and index choice

@pytest.mark.parametrize(("filters", "index"), [
    (SignalFilters(symbol="BTC/USDT", status="ACTIVE"), BY_SYMBOL), (SignalFilters(status="ACTIVE"), BY_STATUS),
    (SignalFilters(side="LONG"), BY_TIME), (SignalFilters(), BY_TIME)])
def test_index_follows_the_most_specific_filter(filters: SignalFilters, index: str) -> None:
    assert filters.index_name == index


def test_filters_are_normalised() -> None:
    since = datetime(2026, 11, 1, 1, 0, 0, 500_000, tzinfo=UTC)
    filters = signal_filters("eth_usdt", "SHORT", "ACTIVE", since, None)
    assert filters == SignalFilters("ETH/USDT", "SHORT", "ACTIVE", "2026-11-01T01:00:01Z", None)


def test_since_after_until_is_refused() -> None:
    with pytest.raises(BadRequest, match="after until"):
        signal_filters(since=MOMENT, until=datetime(2026, 1, 1, tzinfo=UTC))


# ---------------------------------------------------------------- WebSocket messages

def test_symbols_in_any_spelling_are_normalised() -> None:
    assert parse_symbols(["btc-usdt", "ETH_USDT", "SOL/USDT"]) == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}


@pytest.mark.parametrize(("body", "code"), [(None, "malformed_json"), ("{", "malformed_json"),
                                            ("42", "malformed_json"), ("x" * 9000, "message_too_large")])
def test_bad_bodies(body: str | None, code: str) -> None:
    with pytest.raises(BadMessage) as caught:
        parse_message(body)
    assert caught.value.code == code
