"""S3 model registry (moto, in-process): publish moves the pointer, get caches and re-checks it."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from traderai.adapters.model_registry import (
    ModelRegistry,
    move_pointer,
    publish,
    read_pointer,
    require_conditional_writes,
)
from traderai.model.layout import market_key
from traderai.model.serving import ModelError, ModelNotFoundError

BUCKET, PREFIX = "traderai-test", "models"


def bundled_pair(symbol: str = "BTC_USDT") -> tuple[dict[str, Any], dict[str, Any]]:
    folder = Path(str(resources.files("traderai") / "data" / "models")) / symbol / "15m"
    pointer = json.loads((folder / "latest.json").read_text())
    root = folder.parent.parent
    artifact = json.loads((root / pointer["key"]).read_text())
    return artifact, json.loads((root / pointer["manifest_key"]).read_text())


def renamed(manifest: dict[str, Any], model_id: str) -> dict[str, Any]:
    changed = copy.deepcopy(manifest)
    changed["model_id"] = model_id
    return changed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_publish_writes_files_then_points_latest_at_them(s3: Any) -> None:
    artifact, manifest = bundled_pair()
    pointer = publish(s3, BUCKET, PREFIX, artifact, manifest)
    folder = f"models/BTC_USDT/15m/{manifest['model_id']}"
    assert pointer == {"model_id": manifest["model_id"], "key": f"{folder}/model.json",
                       "manifest_key": f"{folder}/manifest.json"}
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key="models/BTC_USDT/15m/latest.json")["Body"].read())
    assert stored == {**pointer, "artifact": artifact, "manifest": manifest}  # a copy of what it names
    assert read_pointer(s3, BUCKET, PREFIX, "BTC/USDT", "15m")[0] == pointer  # registry operations: no copy
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=f"{folder}/model.json")["Body"].read()) == artifact


def test_get_serves_the_published_model(s3: Any) -> None:
    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, manifest)
    model = ModelRegistry(BUCKET, PREFIX, lambda: s3).get("btc/usdt", "15m")
    assert model.model_id == manifest["model_id"] and model.symbol == "BTC/USDT"


def test_a_pooled_model_resolves_per_market(s3: Any) -> None:
    artifact, btc = bundled_pair("BTC_USDT")
    _, eth = bundled_pair("ETH_USDT")
    publish(s3, BUCKET, PREFIX, artifact, btc)
    publish(s3, BUCKET, PREFIX, artifact, eth)
    registry = ModelRegistry(BUCKET, PREFIX, lambda: s3)
    assert registry.get("BTC/USDT", "15m").model_id.startswith("BTC_USDT_15m_")
    assert registry.get("ETH/USDT", "15m").model_id.startswith("ETH_USDT_15m_")


def test_cached_model_is_reused_until_the_refresh_interval_then_the_pointer_is_followed(s3: Any) -> None:
    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, renamed(manifest, "BTC_USDT_15m_20250101_000000"))
    calls: list[int] = []
    clock = Clock()

    def factory() -> Any:
        calls.append(1)
        return s3

    registry = ModelRegistry(BUCKET, PREFIX, factory, refresh_seconds=300, clock=clock)
    first = registry.get("BTC/USDT", "15m")
    reads = len(calls)
    publish(s3, BUCKET, PREFIX, artifact, renamed(manifest, "BTC_USDT_15m_20250201_000000"))
    clock.now += 299
    assert registry.get("BTC/USDT", "15m") is first and len(calls) == reads  # warm: no S3 call
    clock.now += 2
    assert registry.get("BTC/USDT", "15m").model_id == "BTC_USDT_15m_20250201_000000"


def test_an_unmoved_pointer_does_not_reload_the_model(s3: Any) -> None:
    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, manifest)
    clock = Clock()
    registry = ModelRegistry(BUCKET, PREFIX, lambda: s3, refresh_seconds=60, clock=clock)
    first = registry.get("BTC/USDT", "15m")
    clock.now += 120
    assert registry.get("BTC/USDT", "15m") is first


@pytest.mark.parametrize("on_lambda", [True, False])
def test_a_loaded_model_is_frozen_out_of_the_collector_in_a_sandbox_only(s3: Any, on_lambda: bool,
                                                                        monkeypatch: Any) -> None:
    import gc

    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, manifest)
    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))  # the real one would freeze pytest's heap too
    registry = ModelRegistry(BUCKET, PREFIX, lambda: s3, freeze_loaded=on_lambda)
    model = registry.get("BTC/USDT", "15m")
    assert registry.get("BTC/USDT", "15m") is model  # cached: nothing loaded, nothing frozen again
    assert frozen == ([1] if on_lambda else [])


def test_no_published_model_is_a_clear_error(s3: Any) -> None:
    with pytest.raises(ModelNotFoundError, match=r"SOL/USDT 15m: s3://traderai-test/models/SOL_USDT/15m/latest"):
        ModelRegistry(BUCKET, PREFIX, lambda: s3).get("SOL/USDT", "15m")


def test_s3_trouble_on_refresh_keeps_serving_the_cached_model(s3: Any) -> None:
    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, manifest)
    clock = Clock()
    healthy = [True]

    def factory() -> Any:
        if not healthy[0]:
            raise ConnectionError("S3 unreachable")
        return s3

    registry = ModelRegistry(BUCKET, PREFIX, factory, refresh_seconds=60, clock=clock)
    first = registry.get("BTC/USDT", "15m")
    healthy[0] = False
    clock.now += 61
    assert registry.get("BTC/USDT", "15m") is first
    with pytest.raises(ConnectionError):
        registry.get("ETH/USDT", "15m")  # nothing cached: the failure surfaces


def test_a_malformed_pointer_is_refused(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="models/BTC_USDT/15m/latest.json", Body=b'{"model": 1}')
    with pytest.raises(ModelError, match=r"latest\.json"):
        ModelRegistry(BUCKET, PREFIX, lambda: s3).get("BTC/USDT", "15m")


def test_a_malformed_model_is_never_published(s3: Any) -> None:
    artifact, manifest = bundled_pair()
    broken = dict(artifact, trees=[], coef=[])  # malformed whichever kind is bundled
    with pytest.raises(ModelError):
        publish(s3, BUCKET, PREFIX, broken, manifest)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_market_key_layout() -> None:
    assert market_key("models/", "eth-usdt", "1h") == "models/ETH_USDT/1h"
    assert market_key("", "BTC/USDT:USDT", "15m") == "BTC_USDT_USDT/15m"


def test_a_botocore_without_s3_conditional_writes_is_named_not_used() -> None:
    with pytest.raises(ModelError, match=r"botocore 1\.35\.68 cannot make S3 conditional writes .*1\.35\.69"):
        require_conditional_writes("1.35.68")
    with pytest.raises(ModelError, match=r"botocore 1\.34\.162 "):
        require_conditional_writes("1.34.162")
    require_conditional_writes("1.35.69")
    require_conditional_writes("1.44.8")


def test_a_pointer_move_on_too_old_a_botocore_leaves_the_pointer_alone(s3: Any, monkeypatch: Any) -> None:
    import botocore

    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, manifest)
    key = "models/BTC_USDT/15m/latest.json"
    before = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    monkeypatch.setattr(botocore, "__version__", "1.35.60")
    with pytest.raises(ModelError, match="conditional writes"):
        move_pointer(s3, BUCKET, PREFIX, "BTC/USDT", "15m", manifest["model_id"],
                     expected_model_id=manifest["model_id"], reason="test", moved_at="2025-01-01T00:00:00Z")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == before

class SlowS3:
    """The moto client with a delay per GET (S3's round trip) that counts how many run at once."""

    def __init__(self, client: Any, delay_s: float = 0.05) -> None:
        self._client, self._delay = client, delay_s
        self._lock = threading.Lock()
        self.in_flight = self.peak = self.gets = self.not_modified = 0
        self.keys: list[str] = []

    def get_object(self, **kwargs: Any) -> Any:
        with self._lock:
            self.in_flight += 1
            self.gets += 1
            self.keys.append(kwargs["Key"])
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self._delay)
            return self._client.get_object(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "304":
                with self._lock:
                    self.not_modified += 1
            raise
        finally:
            with self._lock:
                self.in_flight -= 1


def test_prefetch_reads_a_shards_models_at_once_then_get_reads_nothing(s3: Any) -> None:
    artifact, manifest = bundled_pair()
    symbols = [f"C{i}/USDT" for i in range(20)]
    for i, symbol in enumerate(symbols):
        publish(s3, BUCKET, PREFIX, artifact, {**renamed(manifest, f"C{i}_USDT_15m_20250101_000000"), "symbol": symbol})
    slow, clock = SlowS3(s3), Clock()
    registry = ModelRegistry(BUCKET, PREFIX, lambda: slow, refresh_seconds=60, clock=clock)

    registry.prefetch([*symbols, "NONE/USDT"], "15m", workers=8)
    # the stamp once, then one read per model (its pointer, which carries the model) overlapping, 1 for the missing
    assert 1 < slow.peak <= 8 and slow.gets == 22 and slow.keys[0] == "models/_stamp/15m.json"
    assert all(key.endswith(("latest.json", "_stamp/15m.json")) for key in slow.keys)
    assert [registry.get(s, "15m").symbol for s in symbols] == symbols and slow.gets == 22  # all cached
    with pytest.raises(ModelNotFoundError, match="NONE/USDT"):  # a market failing in prefetch fails on its own
        registry.get("NONE/USDT", "15m")

    clock.now += 61  # the next tick: every market is due a check; the stamp has not moved: one read in all
    reads = slow.gets
    registry.prefetch(symbols, "15m", workers=8)
    assert slow.keys[reads:] == ["models/_stamp/15m.json"]
    assert all(registry.get(s, "15m").model_id == f"C{i}_USDT_15m_20250101_000000" for i, s in enumerate(symbols))
    assert slow.gets == reads + 1

    # one market's pointer moves (the stamp with it): the next check re-reads every pointer at once
    publish(s3, BUCKET, PREFIX, artifact, {**renamed(manifest, "C3_USDT_15m_20250201_000000"), "symbol": "C3/USDT"})
    clock.now += 61
    reads = slow.gets
    registry.prefetch(symbols, "15m", workers=8)
    assert slow.gets - reads == 1 + 20 and slow.peak > 1
    assert slow.not_modified == 19  # the unmoved pointers come back as a bodyless 304 (If-None-Match, their ETag)
    assert registry.get("C3/USDT", "15m").model_id == "C3_USDT_15m_20250201_000000"
    assert registry.get("C4/USDT", "15m").model_id == "C4_USDT_15m_20250101_000000"


def test_a_pointer_moved_with_its_stamp_is_served_at_the_next_check(s3: Any) -> None:
    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, renamed(manifest, "BTC_USDT_15m_20250101_000000"))
    publish(s3, BUCKET, PREFIX, artifact, renamed(manifest, "BTC_USDT_15m_20250201_000000"))
    clock = Clock()
    registry = ModelRegistry(BUCKET, PREFIX, lambda: s3, refresh_seconds=60, clock=clock)
    assert registry.get("BTC/USDT", "15m").model_id == "BTC_USDT_15m_20250201_000000"
    move_pointer(s3, BUCKET, PREFIX, "BTC/USDT", "15m", "BTC_USDT_15m_20250101_000000",
                 expected_model_id="BTC_USDT_15m_20250201_000000", reason="rollback", moved_at="2025-03-01T00:00:00Z")
    stamp = json.loads(s3.get_object(Bucket=BUCKET, Key="models/_stamp/15m.json")["Body"].read())
    assert stamp["symbol"] == "BTC/USDT" and stamp["model_id"] == "BTC_USDT_15m_20250101_000000"
    moved = json.loads(s3.get_object(Bucket=BUCKET, Key="models/BTC_USDT/15m/latest.json")["Body"].read())
    assert moved["manifest"]["model_id"] == "BTC_USDT_15m_20250101_000000" and moved["artifact"] == artifact
    clock.now += 61
    assert registry.get("BTC/USDT", "15m").model_id == "BTC_USDT_15m_20250101_000000"


def test_a_pointer_without_a_copy_of_its_model_is_served_from_the_files(s3: Any) -> None:
    """A pointer written before pointers carried their model: the two files it names are read."""
    artifact, manifest = bundled_pair()
    pointer = publish(s3, BUCKET, PREFIX, artifact, manifest)
    s3.put_object(Bucket=BUCKET, Key="models/BTC_USDT/15m/latest.json", Body=json.dumps(pointer).encode())
    slow = SlowS3(s3, delay_s=0)
    model = ModelRegistry(BUCKET, PREFIX, lambda: slow).get("BTC/USDT", "15m")
    assert model.model_id == manifest["model_id"] and model.manifest == manifest
    assert slow.keys[1:] == ["models/BTC_USDT/15m/latest.json", pointer["key"], pointer["manifest_key"]]


def test_a_pointer_whose_copy_names_another_model_is_refused(s3: Any) -> None:
    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, manifest)
    key = "models/BTC_USDT/15m/latest.json"
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    stored["manifest"] = renamed(manifest, "BTC_USDT_15m_20990101_000000")
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(stored).encode())
    with pytest.raises(ModelError, match=r"pointer names \S+ but its manifest is BTC_USDT_15m_20990101_000000"):
        ModelRegistry(BUCKET, PREFIX, lambda: s3).get("BTC/USDT", "15m")


def test_publish_whose_stamp_write_fails_reports_the_pointer_it_moved(s3: Any, caplog: Any) -> None:
    """The pointer is written before the stamp: a failed stamp write is logged, and the move stands."""
    from botocore.exceptions import ClientError

    class NoStamp:
        def put_object(self, **kwargs: Any) -> Any:
            if kwargs["Key"] == "models/_stamp/15m.json":
                raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce"}}, "PutObject")
            return s3.put_object(**kwargs)

    artifact, manifest = bundled_pair()
    pointer = publish(NoStamp(), BUCKET, PREFIX, artifact, manifest)
    assert read_pointer(s3, BUCKET, PREFIX, "BTC/USDT", "15m")[0] == pointer
    assert "models/_stamp/15m.json" not in [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert [r.levelname for r in caplog.records if getattr(r, "reason", None) == "stamp_not_bumped"] == ["ERROR"]


def test_without_a_stamp_every_pointer_is_read_at_each_check(s3: Any) -> None:
    """A bucket whose models were published before stamps existed: pointers are read as they always were."""
    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, renamed(manifest, "BTC_USDT_15m_20250101_000000"))
    s3.delete_object(Bucket=BUCKET, Key="models/_stamp/15m.json")
    slow, clock = SlowS3(s3, delay_s=0), Clock()
    registry = ModelRegistry(BUCKET, PREFIX, lambda: slow, refresh_seconds=60, clock=clock)
    registry.get("BTC/USDT", "15m")
    clock.now += 61
    reads = slow.gets
    registry.get("BTC/USDT", "15m")
    assert slow.keys[reads:] == ["models/_stamp/15m.json", "models/BTC_USDT/15m/latest.json"]


def test_a_pointer_moved_without_a_stamp_bump_is_found_by_the_backstop(s3: Any) -> None:
    """The stamp bump failed after the pointer moved (logged as stamp_not_bumped): the pointer is still read
    within the backstop, however often the unchanged stamp is read meanwhile."""
    artifact, manifest = bundled_pair()
    publish(s3, BUCKET, PREFIX, artifact, renamed(manifest, "BTC_USDT_15m_20250101_000000"))
    clock = Clock()
    registry = ModelRegistry(BUCKET, PREFIX, lambda: s3, refresh_seconds=60, clock=clock, backstop_seconds=3600)
    registry.get("BTC/USDT", "15m")
    stamp_before = s3.get_object(Bucket=BUCKET, Key="models/_stamp/15m.json")["Body"].read()
    publish(s3, BUCKET, PREFIX, artifact, renamed(manifest, "BTC_USDT_15m_20250201_000000"))
    s3.put_object(Bucket=BUCKET, Key="models/_stamp/15m.json", Body=stamp_before)  # as if the bump never happened
    served = []
    for _ in range(6 * 75):  # every minute for 7.5 hours
        clock.now += 61
        served.append(registry.get("BTC/USDT", "15m").model_id)
    switched = served.index("BTC_USDT_15m_20250201_000000")
    assert 0.75 * 3600 - 61 <= switched * 61 <= 1.25 * 3600 + 61
    assert set(served[switched:]) == {"BTC_USDT_15m_20250201_000000"}


def test_every_list_one_ip_can_serve_is_warmed() -> None:
    """WARM_LIMIT is above the most spot markets the default budget lets one IP serve (shards of 100)."""
    from traderai.core.shards import max_spot_markets, usable_weight
    from traderai.services.predict import WARM_LIMIT
    from traderai.services.sharding import ShardSettings

    default = ShardSettings()
    assert default.weight_per_minute is not None
    assert max_spot_markets(usable_weight(default.weight_per_minute), default.size) <= WARM_LIMIT


def test_a_tick_without_a_close_warms_the_cache_with_the_whole_list_and_never_fails_for_it(caplog: Any) -> None:
    import asyncio
    from datetime import UTC, datetime

    from traderai.market import MarketDataError
    from traderai.services import predict
    from traderai.settings import Settings

    class Down:  # every market fails at the exchange: the test is about the models' reads
        exchange_id = "binance"

        async def fetch_candles(self, symbol: str, *args: Any) -> Any:
            raise MarketDataError(f"{symbol}: exchange down")

        async def market_info(self, symbol: str, *args: Any) -> Any:
            raise MarketDataError(f"{symbol}: exchange down")

    class Models:
        def __init__(self) -> None:
            self.prefetched: list[tuple[str, ...]] = []

        def prefetch(self, symbols: Any, timeframe: str) -> None:
            self.prefetched.append(tuple(symbols))

    listed, shard, reads = tuple(f"C{i}/USDT" for i in range(5)), ("C1/USDT",), []

    def warm() -> tuple[str, ...]:
        reads.append(1)
        return listed

    def tick_at(minute: int, warm: Any, models: Models) -> None:
        tick = datetime(2025, 4, 7, 15, minute, tzinfo=UTC)
        asyncio.run(predict.run_tick(Settings(markets=shard, timeframe="15m", tick_seconds=300), Down(), models,
                                     None, tick, tick, markets=shard, warm=warm))  # type: ignore[arg-type]

    models = Models()
    for minute in (0, 5, 10, 15):
        tick_at(minute, warm, models)
    # 15:00 and 15:15 (the ticks a 15m candle closes in): the shard's markets; 15:05 and 15:10 (none): the whole
    # list, read only then
    assert models.prefetched == [shard, listed, listed, shard] and len(reads) == 2

    def unreadable() -> tuple[str, ...]:
        raise OSError("S3 unreachable")

    models = Models()
    tick_at(5, unreadable, models)  # the tick goes on (its failures are the exchange's), nothing warmed
    assert models.prefetched == [] and "Model cache not warmed: the market list cannot be read" in caplog.text
    predict.WARM_LIMIT, limit = 4, predict.WARM_LIMIT
    try:
        tick_at(5, warm, models)
    finally:
        predict.WARM_LIMIT = limit
    assert models.prefetched == [] and "5 markets, over WARM_LIMIT 4" in caplog.text
