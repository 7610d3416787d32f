"""Where a model's files go, the same in the S3 registry, in the package and in a local training folder.

    {prefix}/{BASE_QUOTE}/{timeframe}/{model_id}/model.json      the artifact (plain JSON)
    {prefix}/{BASE_QUOTE}/{timeframe}/{model_id}/manifest.json   identity, data range, metrics, quantiles
    {prefix}/{BASE_QUOTE}/{timeframe}/latest.json                {"model_id", "key", "manifest_key"}; in S3 also
                                                                 a copy of both documents ("artifact", "manifest")
    {prefix}/_stamp/{timeframe}.json                             {"stamp", "symbol", "model_id"}: rewritten
                                                                 (a new random stamp) after every pointer move

The stamp lets a serving registry skip re-reading every market's pointer: while it is unchanged, no pointer of
the timeframe has moved since the registry last read them (`adapters.model_registry.ModelRegistry`).

Training writes this layout (`traderai.train.write_local`) and the registry reads and publishes it
(`traderai.adapters.model_registry`); neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from traderai.settings import normalize_symbol

POINTER_NAME = "latest.json"
STAMP_FOLDER = "_stamp"  # not a market folder: a market's is BASE_QUOTE, never starting with "_"


def market_key(prefix: str, symbol: str, timeframe: str) -> str:
    """`{prefix}/{BASE_QUOTE}/{timeframe}` (no leading slash when prefix is empty)."""
    base_quote = normalize_symbol(symbol).replace("/", "_").replace(":", "_")
    return "/".join(part for part in (prefix.strip("/"), base_quote, timeframe) if part)


def stamp_key(prefix: str, timeframe: str) -> str:
    """`{prefix}/_stamp/{timeframe}.json`: the timeframe's pointer-move stamp."""
    return "/".join(part for part in (prefix.strip("/"), STAMP_FOLDER, f"{timeframe}.json") if part)


def pointer_document(prefix: str, manifest: Mapping[str, Any]) -> dict[str, str]:
    """The `latest.json` body that points a market at this manifest's model."""
    folder = f"{market_key(prefix, manifest['symbol'], manifest['timeframe'])}/{manifest['model_id']}"
    return {"model_id": manifest["model_id"], "key": f"{folder}/model.json",
            "manifest_key": f"{folder}/manifest.json"}
