"""Where served models live: an S3 registry (deployed) or the models bundled in the package (local).

The layout, the same in S3 and in the package, is `traderai.model.layout`'s.

`publish` writes the two files first and moves the pointer last, so a reader never sees a pointer
to a half-written model; every pointer move then rewrites the timeframe's stamp (`bump_stamp`), which tells a
serving registry that some pointer moved without it re-reading every market's pointer each tick. A model
trained on pooled markets is published once per market (each
with its own model_id and manifest, the same artifact), so lookups stay per market.
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from traderai.contracts import SettingsError
from traderai.model.layout import POINTER_NAME, market_key, pointer_document, stamp_key
from traderai.model.serving import ModelError, ModelNotFoundError, ServedModel, load_model
from traderai.settings import normalize_symbol

logger = Logger(child=True)

def _dump(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def publish(s3_client: Any, bucket: str, prefix: str, artifact: Mapping[str, Any],
            manifest: Mapping[str, Any]) -> dict[str, str]:
    """Upload model.json and manifest.json, then move the market's pointer; returns the pointer.

    The pair is validated with the serving loader first, so a malformed model is never published.
    """
    load_model(artifact, manifest)
    pointer = pointer_document(prefix, manifest)
    for key, document in ((pointer["key"], artifact), (pointer["manifest_key"], manifest)):
        s3_client.put_object(Bucket=bucket, Key=key, Body=_dump(document), ContentType="application/json")
    pointer_key = f"{market_key(prefix, manifest['symbol'], manifest['timeframe'])}/{POINTER_NAME}"
    s3_client.put_object(Bucket=bucket, Key=pointer_key, Body=_dump(_carrying(pointer, artifact, manifest)),
                         ContentType="application/json", CacheControl="no-cache")
    _bump_after_move(s3_client, bucket, prefix, manifest["timeframe"], symbol=manifest["symbol"],
                     model_id=manifest["model_id"])
    return pointer


# A pointer carries a copy of the two documents of the model it names (`artifact`, `manifest`): a registry meeting
# a market for the first time reads one object, not three (a shard lands on whichever sandbox is free, so a
# sandbox meets new markets often). The files under the model's folder stay the record; `read_pointer` (the
# registry operations, the CLI) returns the pointer without the copies.
CARRIED = ("artifact", "manifest")


def _carrying(pointer: Mapping[str, Any], artifact: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {**pointer, "artifact": artifact, "manifest": manifest}


def bump_stamp(s3_client: Any, bucket: str, prefix: str, timeframe: str, *, symbol: str, model_id: str) -> str:
    """Rewrite the timeframe's stamp with a new random value, AFTER a pointer moved; returns the stamp.

    A serving registry reads the stamp before it reads pointers: once it has read every pointer under stamp S,
    a later move changes the stamp (unique values, last writer wins; no read-modify-write, so concurrent moves
    never conflict here), and the first read of the new stamp sends it back to the pointers. A move whose bump
    failed (logged as `stamp_not_bumped` by `publish` and `move_pointer`) is still found by the registry's
    backstop re-read of every pointer.
    """
    stamp = uuid.uuid4().hex
    s3_client.put_object(Bucket=bucket, Key=stamp_key(prefix, timeframe),
                         Body=_dump({"stamp": stamp, "symbol": normalize_symbol(symbol), "model_id": model_id}),
                         ContentType="application/json", CacheControl="no-cache")
    return stamp


def _bump_after_move(s3_client: Any, bucket: str, prefix: str, timeframe: str, *, symbol: str,
                     model_id: str) -> str | None:
    """`bump_stamp` once the pointer has moved: the move stands whatever the bump does, so a failed bump is
    logged (reason `stamp_not_bumped`), not raised. Raised, it would report a move that happened as failed: the
    retraining's Promote step would fail before writing any decision record (the markets it had moved included)
    and its notification say the champions stay, and a rerun would find the pointers already moved
    (PointerConflictError) and record the promoted markets as kept, naming the old champions as served."""
    try:
        return bump_stamp(s3_client, bucket, prefix, timeframe, symbol=symbol, model_id=model_id)
    except Exception as exc:  # noqa: BLE001 - the pointer moved: the registries' backstop finds it (see above)
        logger.error("model pointer moved but the stamp was not rewritten: serving registries find the move "
                     "within their backstop re-read (POINTER_BACKSTOP_SECONDS), not at their next check",
                     extra={"reason": "stamp_not_bumped", "symbol": normalize_symbol(symbol), "timeframe": timeframe,
                            "model_id": model_id, "key": stamp_key(prefix, timeframe), "error": str(exc)})
        return None


def _get(s3_client: Any, bucket: str, key: str, unless: str | None = None) -> tuple[bytes | None, str] | None:
    """(the object's bytes, its ETag); None when there is no such object; (None, `unless`) when its ETag is
    still `unless` (If-None-Match: S3 answers a bodyless 304)."""
    from botocore.exceptions import ClientError

    try:
        reply = s3_client.get_object(Bucket=bucket, Key=key, **({"IfNoneMatch": unless} if unless else {}))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if unless and code in ("304", "NotModified"):
            return None, unless
        if code in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return reply["Body"].read(), reply.get("ETag", "")


def _documents(s3_client: Any, bucket: str, keys: Iterable[str], missing: Callable[[str], Exception]) -> list[Any]:
    """The JSON documents at `keys`, in order; `missing(key)` is raised for one that does not exist."""
    documents = []
    for key in keys:
        found = _get(s3_client, bucket, key)
        if found is None or found[0] is None:
            raise missing(key)
        try:
            documents.append(json.loads(found[0]))
        except ValueError as exc:
            raise ModelError(f"s3://{bucket}/{key}: not JSON ({exc})") from exc
    return documents


def _parse_pointer(raw: bytes, where: str) -> dict[str, Any]:
    try:
        pointer = json.loads(raw)
    except ValueError as exc:
        raise ModelError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(pointer, dict) or not all(
            isinstance(pointer.get(k), str) and pointer[k] for k in ("model_id", "key")):
        raise ModelError(f"{where}: expected {{\"model_id\": ..., \"key\": ...}}")
    pointer.setdefault("manifest_key", pointer["key"].rsplit("/", 1)[0] + "/manifest.json")
    return pointer


@dataclass
class _Cached:
    model: ServedModel
    checked_at: float  # last time this market was checked (a pointer read, or the stamp found unchanged)
    stamp: str | None  # the stamp read before this market's pointer was last read (None: no stamp then)
    pointer_due: float  # the backstop: the pointer is read again by then whatever the stamp says
    etag: str | None = None  # the pointer object's ETag: a re-read of an unchanged pointer is a bodyless 304


# S3 reads in flight while a shard's model pointers are refreshed: botocore's default pool (10 connections);
# more threads than connections would open and throw away a connection per read.
PREFETCH_WORKERS = 10


# The backstop: a cached market's pointer is read again within about this long even while the stamp says
# nothing moved (a move whose stamp bump failed); spread over +-25 % by symbol, so the re-reads of markets loaded
# together fall on different ticks.
POINTER_BACKSTOP_SECONDS = 6 * 3600.0


class ModelRegistry:
    """Models from S3, cached across warm invocations; checked at most every `refresh_seconds`, and the model
    files read again only when the pointer moved.

    A check reads the timeframe's stamp (one GET for all markets, at most once per `refresh_seconds`): while it is
    the stamp under which a market's pointer was last read, no pointer moved and the pointer is not read again
    (until the backstop, `backstop_seconds`); when it changed, or a bucket has no stamp (models published before
    stamps), the pointer is read as before. So a sandbox serving 100 markets makes one S3 read per check, not 100.

    If S3 fails on a refresh while a model is cached, the cached model keeps serving (and a
    warning is logged): a stale model is better than no predictions, and `expires_at` bounds it.
    """

    def __init__(self, bucket: str, prefix: str, s3_client_factory: Callable[[], Any], *,
                 refresh_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 backstop_seconds: float = POINTER_BACKSTOP_SECONDS, freeze_loaded: bool = False) -> None:
        self.bucket, self.prefix = bucket, prefix
        self._freeze_loaded = freeze_loaded
        self._client_factory = s3_client_factory
        self._refresh_seconds = refresh_seconds
        self._backstop_seconds = backstop_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._stamps: dict[str, tuple[str | None, float]] = {}  # timeframe -> (stamp, when read)
        self._stamp_lock = threading.Lock()

    def get(self, symbol: str, timeframe: str) -> ServedModel:
        """The model the market's pointer names; ModelNotFoundError if none is published."""
        cache_key = (normalize_symbol(symbol), timeframe)
        cached = self._cache.get(cache_key)
        now = self._clock()
        if cached and now - cached.checked_at < self._refresh_seconds:
            return cached.model
        stamp = self._stamp(timeframe, now)  # read before the pointer: a move after it changes the stamp
        if cached and self._unmoved(cached, stamp, now):
            cached.checked_at = now
            return cached.model
        try:
            pointer, etag = self._read_pointer(*cache_key, unless=cached.etag if cached else None)
            if cached and (pointer is None or cached.model.model_id == pointer["model_id"]):
                cached.checked_at, cached.stamp, cached.pointer_due = now, stamp, self._due(cache_key[0], now)
                cached.etag = etag
                return cached.model
            if pointer is None:  # a 304 answers only the ETag of a cached pointer
                raise ModelError(f"{cache_key[0]} {timeframe}: S3 answered 'not modified' to a first read")
            model = self._load(pointer)
        except ModelNotFoundError:
            raise
        except Exception as exc:
            if cached is None:
                raise
            logger.warning("model registry refresh failed; serving the cached model",
                           extra={"symbol": cache_key[0], "model_id": cached.model.model_id,
                                  "error": str(exc)})
            cached.checked_at = now
            return cached.model
        self._cache[cache_key] = _Cached(model, now, stamp, self._due(cache_key[0], now), etag)
        if self._freeze_loaded:
            # A served model lives as long as the sandbox, as do the ~250,000 objects the imports left: freeze
            # moves everything alive now (this model's ~100 containers among them) out of the collector's passes,
            # which walked them all at every full collection and never found garbage (bench/shard_tick.py: 60
            # full collections of up to 2.5 s in a 1,000-market run, 15 after). Frozen objects are still freed by
            # their reference counts; a cycle in flight now (another thread's) is never collected: bounded, since
            # a freeze follows only a load.
            gc.freeze()
        return model

    def prefetch(self, symbols: Iterable[str], timeframe: str, workers: int = PREFETCH_WORKERS) -> None:
        """Refresh every market's cached model due for it at once, `workers` S3 reads in flight, instead of
        one read after another as `get` would (a 100-market shard re-reads 100 pointers after the stamp moved,
        and a cold sandbox reads 300 objects). A market that fails here is left alone: its `get` raises as before."""
        now = self._clock()
        try:
            cached = {symbol: self._cache.get((normalize_symbol(symbol), timeframe)) for symbol in symbols}
        except SettingsError:  # not a symbol: its get() says so, for that market only
            return
        stale = {symbol: entry for symbol, entry in cached.items()
                 if entry is None or now - entry.checked_at >= self._refresh_seconds}
        stamp = self._stamp(timeframe, now) if stale else None
        due = [symbol for symbol, entry in stale.items() if entry is None or not self._unmoved(entry, stamp, now)]
        if len(due) < 2:
            return

        def refresh(symbol: str) -> None:
            with contextlib.suppress(Exception):  # get() raises it again, for this market only
                self.get(symbol, timeframe)

        with ThreadPoolExecutor(min(workers, len(due)), thread_name_prefix="model-prefetch") as pool:
            list(pool.map(refresh, due))

    def _stamp(self, timeframe: str, now: float) -> str | None:
        """The timeframe's stamp, read at most once per refresh interval (None: no stamp, or S3 failed)."""
        with self._stamp_lock:
            seen = self._stamps.get(timeframe)
            if seen is not None and now - seen[1] < self._refresh_seconds:
                return seen[0]
            key = stamp_key(self.prefix, timeframe)
            try:
                found = _get(self._client_factory(), self.bucket, key)
                stamp = None if found is None or found[0] is None else json.loads(found[0]).get("stamp")
            except Exception as exc:  # noqa: BLE001 - no stamp means every pointer is read, as before stamps
                logger.warning("model registry stamp unreadable; reading every pointer",
                               extra={"key": key, "error": str(exc)})
                stamp = None
            stamp = stamp if isinstance(stamp, str) and stamp else None
            self._stamps[timeframe] = (stamp, now)
            return stamp

    @staticmethod
    def _unmoved(entry: _Cached, stamp: str | None, now: float) -> bool:
        """Whether the stamp vouches for the cached pointer: the one it was read under, and the backstop not due."""
        return stamp is not None and entry.stamp == stamp and now < entry.pointer_due

    def _due(self, symbol: str, now: float) -> float:
        spread = 0.75 + 0.5 * zlib.crc32(symbol.encode()) / 2**32
        return now + self._backstop_seconds * spread

    def _read_pointer(self, symbol: str, timeframe: str, unless: str | None = None
                      ) -> tuple[dict[str, Any] | None, str | None]:
        """(the market's pointer, its ETag); (None, `unless`) when the pointer's ETag is still `unless` (S3's
        If-None-Match: a pointer carries its model, ~25 KB, which an unchanged pointer is not sent again)."""
        key = f"{market_key(self.prefix, symbol, timeframe)}/{POINTER_NAME}"
        found = _get(self._client_factory(), self.bucket, key, unless)
        if found is None:
            raise ModelNotFoundError(f"no model published for {symbol} {timeframe}: s3://{self.bucket}/{key} "
                                     f"does not exist (publish one with `traderai train ... --bucket "
                                     f"{self.bucket} --prefix {self.prefix}`)")
        raw, etag = found
        return (None if raw is None else _parse_pointer(raw, f"s3://{self.bucket}/{key}")), etag

    def _load(self, pointer: Mapping[str, Any]) -> ServedModel:
        carried = [pointer.get(name) for name in CARRIED]
        documents: list[Any] = carried if all(isinstance(d, dict) for d in carried) else self._read_files(pointer)
        model = load_model(documents[0], documents[1])
        if model.model_id != pointer["model_id"]:
            raise ModelError(f"pointer names {pointer['model_id']} but its manifest is {model.model_id}")
        return model

    def _read_files(self, pointer: Mapping[str, Any]) -> list[Any]:
        """The model's two files, for a pointer that carries no copy (written before pointers carried one)."""
        return _documents(self._client_factory(), self.bucket, (pointer["key"], pointer["manifest_key"]),
                          lambda key: ModelError(f"s3://{self.bucket}/{key}: named by the pointer but missing"))


class BundledModels:
    """Models shipped inside the package (`traderai/data/models/...`, same layout, no prefix)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else Path(str(resources.files("traderai") / "data" / "models"))

    def get(self, symbol: str, timeframe: str) -> ServedModel:
        """The bundled model for the market; ModelNotFoundError listing what is bundled otherwise."""
        return _load_bundled(self.root, normalize_symbol(symbol), timeframe)

    def markets(self) -> list[tuple[str, str]]:
        """(BASE_QUOTE, timeframe) pairs that have a bundled pointer."""
        return sorted((p.parent.parent.name, p.parent.name) for p in self.root.glob(f"*/*/{POINTER_NAME}"))


@lru_cache(maxsize=64)
def _load_bundled(root: Path, symbol: str, timeframe: str) -> ServedModel:
    pointer_path = root / market_key("", symbol, timeframe) / POINTER_NAME
    if not pointer_path.is_file():
        bundled = ", ".join(f"{m}/{tf}" for m, tf in BundledModels(root).markets()) or "none"
        raise ModelNotFoundError(f"no bundled model for {symbol} {timeframe} (bundled: {bundled}); "
                                 f"regenerate with `traderai train --bundled`")
    pointer = _parse_pointer(pointer_path.read_bytes(), str(pointer_path))
    artifact = json.loads((root / pointer["key"]).read_bytes())
    manifest = json.loads((root / pointer["manifest_key"]).read_bytes())
    return load_model(artifact, manifest)


# ---------------------------------------------------------------- registry operations (retraining, CLI)

class PointerConflictError(ModelError):
    """The market's pointer moved since it was read (another retraining or operator won): back off."""


class UnknownModelError(ModelNotFoundError):
    """A model id or market the registry does not hold (the message names it)."""


def pointer_key(prefix: str, symbol: str, timeframe: str) -> str:
    return f"{market_key(prefix, symbol, timeframe)}/{POINTER_NAME}"


def write_model(s3_client: Any, bucket: str, prefix: str, artifact: Mapping[str, Any],
                manifest: Mapping[str, Any]) -> dict[str, str]:
    """Upload a candidate's model.json and manifest.json WITHOUT moving the pointer; returns where they are.

    Validated with the serving loader first: a pair that does not load is never written.
    """
    load_model(artifact, manifest)
    where = pointer_document(prefix, manifest)
    for key, document in ((where["key"], artifact), (where["manifest_key"], manifest)):
        s3_client.put_object(Bucket=bucket, Key=key, Body=_dump(document), ContentType="application/json")
    return where


def read_pointer(s3_client: Any, bucket: str, prefix: str, symbol: str,
                 timeframe: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the market's pointer, its ETag), or (None, None) when the market has none."""
    key = pointer_key(prefix, symbol, timeframe)
    found = _get(s3_client, bucket, key)
    if found is None or found[0] is None:
        return None, None
    pointer = _parse_pointer(found[0], f"s3://{bucket}/{key}")
    return {k: v for k, v in pointer.items() if k not in CARRIED}, found[1]


def load_model_id(s3_client: Any, bucket: str, prefix: str, symbol: str, timeframe: str,
                  model_id: str) -> ServedModel:
    """Load one model of a market by id (ModelError if it does not load, UnknownModelError if absent)."""
    return _model_by_id(s3_client, bucket, prefix, symbol, timeframe, model_id)[0]


def _model_by_id(s3_client: Any, bucket: str, prefix: str, symbol: str, timeframe: str,
                 model_id: str) -> tuple[ServedModel, Any, Any]:
    """(the model, its artifact, its manifest) of a market by id."""
    folder = f"{market_key(prefix, symbol, timeframe)}/{model_id}"
    documents = _documents(s3_client, bucket, (f"{folder}/model.json", f"{folder}/manifest.json"),
                           lambda key: UnknownModelError(f"model {model_id!r} of {symbol} {timeframe}: "
                                                         f"s3://{bucket}/{key} does not exist"))
    model = load_model(documents[0], documents[1])
    if model.model_id != model_id or normalize_symbol(model.symbol) != normalize_symbol(symbol):
        raise ModelError(f"s3://{bucket}/{folder}/manifest.json names {model.model_id} of {model.symbol}")
    return model, documents[0], documents[1]


# S3 conditional writes: PutObject's If-Match arrived in botocore 1.35.69 (If-None-Match in 1.35.x before it).
# The layers do not ship botocore (the Lambda runtime's is used, layers/lock.py), so a runtime older than this
# fails the pointer move with this message instead of an unknown-parameter error.
CONDITIONAL_WRITES_BOTOCORE = (1, 35, 69)


def require_conditional_writes(version: str | None = None) -> None:
    """Raise ModelError, naming both versions, if botocore is too old for S3's If-Match on PutObject."""
    if version is None:
        import botocore  # the runtime's, already loaded by any S3 client

        version = botocore.__version__
    parts = tuple(int(part) for part in version.split(".")[:3] if part.isdigit())
    if parts < CONDITIONAL_WRITES_BOTOCORE:
        needed = ".".join(map(str, CONDITIONAL_WRITES_BOTOCORE))
        raise ModelError(f"botocore {version} cannot make S3 conditional writes (PutObject If-Match needs {needed} "
                         f"or later): the model pointer is not moved. Lambda's python3.12 runtime provides botocore "
                         f"(layers/lock.py); use a runtime version with a newer one")


def move_pointer(s3_client: Any, bucket: str, prefix: str, symbol: str, timeframe: str, model_id: str, *,
                 expected_model_id: str | None, reason: str, moved_at: str) -> dict[str, Any]:
    """Point the market at `model_id`, only if it still points at `expected_model_id` (None: no pointer).

    The write is conditional on the pointer object's ETag (If-Match) or its absence (If-None-Match), so of
    two overlapping moves from the same state one wins and the other gets PointerConflictError. The model
    must load first (a manifest or artifact that does not load is never pointed at). The previous model
    stays in the registry and is named in the pointer (`previous_model_id`), so a rollback is one move.
    """
    from botocore.exceptions import ClientError

    require_conditional_writes()
    _, artifact, manifest = _model_by_id(s3_client, bucket, prefix, symbol, timeframe, model_id)
    current, etag = read_pointer(s3_client, bucket, prefix, symbol, timeframe)
    current_id = current["model_id"] if current else None
    if current_id != expected_model_id:
        raise PointerConflictError(f"{symbol} {timeframe}: pointer names {current_id}, not {expected_model_id}")
    folder = f"{market_key(prefix, symbol, timeframe)}/{model_id}"
    pointer = {"model_id": model_id, "key": f"{folder}/model.json", "manifest_key": f"{folder}/manifest.json",
               "previous_model_id": current_id, "moved_at": moved_at, "reason": reason}
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        s3_client.put_object(Bucket=bucket, Key=pointer_key(prefix, symbol, timeframe),
                             Body=_dump(_carrying(pointer, artifact, manifest)), ContentType="application/json",
                             CacheControl="no-cache", **condition)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise PointerConflictError(f"{symbol} {timeframe}: pointer changed while moving it "
                                       f"({exc.response['Error'].get('Code')})") from exc
        raise
    _bump_after_move(s3_client, bucket, prefix, timeframe, symbol=symbol, model_id=model_id)
    logger.info("model pointer moved", extra={"symbol": symbol, "timeframe": timeframe, "model_id": model_id,
                                              "previous_model_id": current_id, "reason": reason})
    return pointer


def list_model_ids(s3_client: Any, bucket: str, prefix: str, symbol: str, timeframe: str) -> list[str]:
    """Every model id stored for the market (a folder with a manifest.json), oldest name first."""
    base = f"{market_key(prefix, symbol, timeframe)}/"
    ids = set()
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for item in page.get("Contents", []):
            rest = item["Key"][len(base):]
            if rest.count("/") == 1 and rest.endswith("/manifest.json"):
                ids.add(rest.split("/", 1)[0])
    return sorted(ids)


def list_markets(s3_client: Any, bucket: str, prefix: str) -> list[tuple[str, str]]:
    """(BASE/QUOTE, timeframe) of every market with a pointer."""
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    found = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for item in page.get("Contents", []):
            parts = item["Key"][len(base):].split("/")
            if len(parts) == 3 and parts[2] == POINTER_NAME:
                found.append((parts[0].replace("_", "/", 1), parts[1]))
    return sorted(found)


def rollback(s3_client: Any, bucket: str, prefix: str, symbol: str, timeframe: str, *, moved_at: str,
             reason: str = "rollback") -> dict[str, Any]:
    """Point the market back at the model its pointer names as previous: one conditional pointer move.

    Returns the decision record (outcome `rolled_back`) for the retraining log. The model rolled away from
    becomes the new pointer's previous one, so a second rollback undoes the first.
    """
    current, _ = read_pointer(s3_client, bucket, prefix, symbol, timeframe)
    if current is None:
        raise UnknownModelError(f"no model published for {symbol} {timeframe} in s3://{bucket}/{prefix}")
    previous = current.get("previous_model_id")
    if not previous:
        raise UnknownModelError(f"{symbol} {timeframe}: the pointer names no previous model to roll back to "
                                f"(serving {current['model_id']}); use `traderai models promote` with a model id")
    move_pointer(s3_client, bucket, prefix, symbol, timeframe, previous, expected_model_id=current["model_id"],
                 reason=reason, moved_at=moved_at)
    return {"run_id": f"rollback-{moved_at}", "decided_at": moved_at, "symbol": normalize_symbol(symbol),
            "timeframe": timeframe, "outcome": "rolled_back", "reasons": [reason],
            "serving_model_id": previous, "champion_model_id": current["model_id"], "challenger_model_id": previous}
