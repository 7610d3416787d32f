"""`traderai models list|show|promote|rollback` and `traderai retrain`: the registry and one retraining,
against a bucket (AWS credentials as usual) or the local stack (`--local`: moto on 127.0.0.1:4566).

Every pointer move is the registry's conditional write and is recorded in retraining/dt=.../ (outcome
`promoted` by hand or `rolled_back`), so the decision log holds manual moves too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from traderai.adapters import model_registry as registry
from traderai.adapters.candle_archive import CandleArchive
from traderai.contracts import SettingsError, parse_iso_utc
from traderai.model.serving import ModelError, ModelNotFoundError
from traderai.services import retraining
from traderai.services.archive import archive_markets, history_source
from traderai.services.retraining import RETRAINING_PREFIX
from traderai.settings import Settings, normalize_symbol

LOCAL_ENDPOINT = "http://127.0.0.1:4566"
LOCAL_BUCKET = "traderai-data-local"


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bucket", help=f"the stack's DataBucketName (default with --local: {LOCAL_BUCKET})")
    parser.add_argument("--local", action="store_true", help=f"the local stack (`traderai local`, {LOCAL_ENDPOINT})")
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: AWS; --local: moto)")
    parser.add_argument("--prefix", default="models", help="model prefix (default: models)")
    parser.add_argument("--timeframe", default="15m")


def _client(args: argparse.Namespace) -> tuple[Any, str]:
    import boto3

    endpoint = args.endpoint_url or (LOCAL_ENDPOINT if args.local else None)
    bucket = args.bucket or (LOCAL_BUCKET if args.local else None)
    if not bucket:
        raise SystemExit("error: give --bucket BUCKET (the stack's DataBucketName) or --local")
    extra = {"aws_access_key_id": "local", "aws_secret_access_key": "local", "region_name": "us-east-1"} \
        if args.local else {}
    return boto3.client("s3", endpoint_url=endpoint, **extra), bucket


def add_models_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("models", help="list, show, promote or roll back served models",
                                   description="The model registry of a bucket or the local stack.")
    commands = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = commands.add_parser("list", help="every market's models; * marks the one served")
    _target(listing)
    listing.add_argument("--symbol", help="one market (BASE/QUOTE); default every market with a pointer")
    show = commands.add_parser("show", help="a model's manifest (default: the one served)")
    _target(show)
    show.add_argument("--symbol", required=True)
    show.add_argument("--model-id")
    promote = commands.add_parser("promote", help="serve this model id (one conditional pointer move, logged)")
    _target(promote)
    promote.add_argument("--symbol", required=True)
    promote.add_argument("--model-id", required=True)
    rollback = commands.add_parser("rollback", help="serve the previous model again (one pointer move, logged)")
    _target(rollback)
    rollback.add_argument("--symbol", required=True)
    parser.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    s3, bucket = _client(args)
    try:
        symbol = normalize_symbol(args.symbol) if getattr(args, "symbol", None) else None
        return _ACTIONS[args.models_command](args, s3, bucket, symbol)
    except (ModelError, ModelNotFoundError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _models_list(args: argparse.Namespace, s3: Any, bucket: str, symbol: str | None) -> int:
    markets = [(symbol, args.timeframe)] if symbol else registry.list_markets(s3, bucket, args.prefix)
    for market, timeframe in markets:
        pointer, _ = registry.read_pointer(s3, bucket, args.prefix, market, timeframe)
        ids = registry.list_model_ids(s3, bucket, args.prefix, market, timeframe)
        if not ids and pointer is None:
            raise registry.UnknownModelError(f"no model stored for {market} {timeframe} in s3://{bucket}/{args.prefix}")
        print(f"{market} {timeframe}")
        for model_id in ids:
            mark = "*" if pointer and pointer["model_id"] == model_id else " "
            previous = " (previous)" if pointer and pointer.get("previous_model_id") == model_id else ""
            print(f"  {mark} {model_id}{previous}")
    return 0


def _models_show(args: argparse.Namespace, s3: Any, bucket: str, symbol: str) -> int:
    pointer, _ = registry.read_pointer(s3, bucket, args.prefix, symbol, args.timeframe)
    model_id = args.model_id or (pointer or {}).get("model_id")
    if not model_id:
        raise registry.UnknownModelError(f"no model published for {symbol} {args.timeframe} in s3://{bucket}")
    model = registry.load_model_id(s3, bucket, args.prefix, symbol, args.timeframe, model_id)
    print(json.dumps({"served": bool(pointer and pointer["model_id"] == model_id), "pointer": pointer,
                      "manifest": {k: v for k, v in model.manifest.items() if k != "feature_quantiles"}},
                     indent=2, default=str))
    return 0


def _record(s3: Any, bucket: str, record: dict[str, Any]) -> str:
    key = f"{RETRAINING_PREFIX}/dt={record['decided_at'][:10]}/{record['run_id'].replace(':', '')}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=(json.dumps(record, sort_keys=True) + "\n").encode())
    return key


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _models_promote(args: argparse.Namespace, s3: Any, bucket: str, symbol: str) -> int:
    pointer, _ = registry.read_pointer(s3, bucket, args.prefix, symbol, args.timeframe)
    current = pointer["model_id"] if pointer else None
    moved_at = _now()
    registry.move_pointer(s3, bucket, args.prefix, symbol, args.timeframe, args.model_id, expected_model_id=current,
                          reason="promoted by hand (traderai models promote)", moved_at=moved_at)
    key = _record(s3, bucket, {"run_id": f"promote-{moved_at}", "decided_at": moved_at, "symbol": symbol,
                               "timeframe": args.timeframe, "outcome": "promoted",
                               "reasons": ["promoted by hand (traderai models promote)"],
                               "serving_model_id": args.model_id, "champion_model_id": current,
                               "challenger_model_id": args.model_id})
    print(f"{symbol} {args.timeframe}: serving {args.model_id} (was {current}); logged in s3://{bucket}/{key}")
    return 0


def _models_rollback(args: argparse.Namespace, s3: Any, bucket: str, symbol: str) -> int:
    record = registry.rollback(s3, bucket, args.prefix, symbol, args.timeframe, moved_at=_now(),
                               reason="rolled back by hand (traderai models rollback)")
    key = _record(s3, bucket, record)
    print(f"{symbol} {args.timeframe}: serving {record['serving_model_id']} again (was "
          f"{record['champion_model_id']}); logged in s3://{bucket}/{key}")
    return 0


_ACTIONS: dict[str, Callable[..., int]] = {"list": _models_list, "show": _models_show, "promote": _models_promote,
                                           "rollback": _models_rollback}


def add_retrain_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "retrain", help="run one retraining (archive, train, evaluate, promote or keep) against a bucket",
        description="The state machine's steps in this process, against a bucket or the local stack: "
                    "optionally fill the candle archive first, then train, evaluate and promote or keep.")
    _target(parser)
    parser.add_argument("--markets", default="BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT")
    parser.add_argument("--exchange", default="binance")
    parser.add_argument("--time", help="the run's clock, UTC ISO-8601 (default now)")
    parser.add_argument("--train-days", type=int, default=180)
    parser.add_argument("--eval-days", type=int, default=14)
    parser.add_argument("--archive", choices=("none", "bundled", "ccxt"), default="none",
                        help="fill the candle archive first: from the bundled candles, or the exchange (ccxt)")
    parser.set_defaults(func=run_retrain)


def run_retrain(args: argparse.Namespace) -> int:
    s3, bucket = _client(args)
    settings = Settings(markets=tuple(m.strip() for m in args.markets.split(",") if m.strip()),
                        timeframe=args.timeframe, exchange_id=args.exchange, bucket_name=bucket,
                        model_prefix=args.prefix, market_source="ccxt" if args.archive == "ccxt" else "replay")
    retrain = retraining.RetrainSettings.from_env({"TRAIN_DAYS": str(args.train_days),
                                                   "EVAL_DAYS": str(args.eval_days)})
    now = parse_iso_utc(args.time, "--time") if args.time else datetime.now(UTC).replace(microsecond=0)
    archive = CandleArchive(s3, bucket, args.exchange, retrain.archive_prefix)
    if args.archive != "none":
        import asyncio

        source = history_source(settings)
        days = max(retrain.backfill_days, args.train_days + args.eval_days)
        results = asyncio.run(archive_markets(archive, source, settings.markets, settings.timeframe, now,
                                              backfill_days=days))
        for result in results:
            print(f"archive {result.symbol}: {result.status}, {result.candles} candles, until {result.archived_until}"
                  + (f" ({result.reason}: {result.error})" if result.reason else ""), file=sys.stderr)
    trained = retraining.train_step(settings, retrain, archive, s3, now)
    evaluated = retraining.evaluate_step(settings, retrain, archive, s3, trained, now)
    decided = retraining.decide_step(settings, s3, evaluated, now, retrain)
    print(decided["message"])
    return 0
