"""Where served models live: an S3 registry (deployed) or the models bundled in the package (local).

Layout, the same in S3 and in the package:

    {prefix}/{BASE_QUOTE}/{timeframe}/{model_id}/model.json      the artifact (plain JSON)
    {prefix}/{BASE_QUOTE}/{timeframe}/{model_id}/manifest.json   identity, data range, metrics, quantiles
    {prefix}/{BASE_QUOTE}/{timeframe}/latest.json                {"model_id", "key", "manifest_key"}

`publish` writes the two files first and moves the pointer last, so a reader never sees a pointer
to a half-written model. A model trained on pooled markets is published once per market (each
with its own model_id and manifest, the same artifact), so lookups stay per market.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from traderai.model.serving import ModelError, ModelNotFoundError, ServedModel, load_model
from traderai.settings import normalize_symbol

logger = Logger(child=True)

POINTER_NAME = "latest.json"


class ModelSource(Protocol):
    """Anything that resolves (symbol, timeframe) to the model to serve."""

    def get(self, symbol: str, timeframe: str) -> ServedModel: ...


def market_key(prefix: str, symbol: str, timeframe: str) -> str:
    """`{prefix}/{BASE_QUOTE}/{timeframe}` (no leading slash when prefix is empty)."""
    base_quote = normalize_symbol(symbol).replace("/", "_").replace(":", "_")
    return "/".join(part for part in (prefix.strip("/"), base_quote, timeframe) if part)


def pointer_document(prefix: str, manifest: Mapping[str, Any]) -> dict[str, str]:
    """The `latest.json` body that points a market at this manifest's model."""
    folder = f"{market_key(prefix, manifest['symbol'], manifest['timeframe'])}/{manifest['model_id']}"
    return {"model_id": manifest["model_id"], "key": f"{folder}/model.json",
            "manifest_key": f"{folder}/manifest.json"}


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
    s3_client.put_object(Bucket=bucket, Key=pointer_key, Body=_dump(pointer), ContentType="application/json",
                         CacheControl="no-cache")
    return pointer


def _parse_pointer(raw: bytes, where: str) -> dict[str, str]:
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
    checked_at: float


class ModelRegistry:
    """Models from S3, cached across warm invocations; the pointer is re-read at most every
    `refresh_seconds`, and the model files only when the pointer moved.

    If S3 fails on a refresh while a model is cached, the cached model keeps serving (and a
    warning is logged): a stale model is better than no predictions, and `expires_at` bounds it.
    """

    def __init__(self, bucket: str, prefix: str, s3_client_factory: Callable[[], Any], *,
                 refresh_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.bucket, self.prefix = bucket, prefix
        self._client_factory = s3_client_factory
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], _Cached] = {}

    def get(self, symbol: str, timeframe: str) -> ServedModel:
        """The model the market's pointer names; ModelNotFoundError if none is published."""
        cache_key = (normalize_symbol(symbol), timeframe)
        cached = self._cache.get(cache_key)
        now = self._clock()
        if cached and now - cached.checked_at < self._refresh_seconds:
            return cached.model
        try:
            pointer = self._read_pointer(*cache_key)
            if cached and cached.model.model_id == pointer["model_id"]:
                cached.checked_at = now
                return cached.model
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
        self._cache[cache_key] = _Cached(model, now)
        return model

    def _read_pointer(self, symbol: str, timeframe: str) -> dict[str, str]:
        key = f"{market_key(self.prefix, symbol, timeframe)}/{POINTER_NAME}"
        raw = self._get_object(key)
        if raw is None:
            raise ModelNotFoundError(f"no model published for {symbol} {timeframe}: s3://{self.bucket}/{key} "
                                     f"does not exist (publish one with `traderai train ... --bucket "
                                     f"{self.bucket} --prefix {self.prefix}`)")
        return _parse_pointer(raw, f"s3://{self.bucket}/{key}")

    def _load(self, pointer: Mapping[str, str]) -> ServedModel:
        documents = []
        for key in (pointer["key"], pointer["manifest_key"]):
            raw = self._get_object(key)
            if raw is None:
                raise ModelError(f"s3://{self.bucket}/{key}: named by the pointer but missing")
            try:
                documents.append(json.loads(raw))
            except ValueError as exc:
                raise ModelError(f"s3://{self.bucket}/{key}: not JSON ({exc})") from exc
        model = load_model(documents[0], documents[1])
        if model.model_id != pointer["model_id"]:
            raise ModelError(f"pointer names {pointer['model_id']} but its manifest is {model.model_id}")
        return model

    def _get_object(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self._client_factory().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise


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
