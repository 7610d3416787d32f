"""`traderai markets check|put|get`: the market list the tick reads from S3 (template parameter MarketListKey),
against a bucket (AWS credentials as usual) or the local stack (`--local`: moto on 127.0.0.1:4566).

`put` parses the file first with the very parser every tick's plan uses (market.listing) and uploads nothing
if a line is bad, so a list that reaches the bucket was valid when it left; the next tick reads it, with no
redeploy. The plan still checks it every tick (the object may be written by other means, e.g. `aws s3 cp`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from traderai.adapters.market_list import DEFAULT_LIST_KEY, S3MarketList
from traderai.market.listing import MarketListError, parse_market_list
from traderai.models_cli import LOCAL_BUCKET, _client

DEFAULT_KEY = DEFAULT_LIST_KEY


def add_markets_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("markets", help="check, upload or show the market list the tick reads from S3",
                                   description="The market list of a stack deployed with MarketListKey "
                                               "(docs/markets.md): one market per line, or a JSON array.")
    actions = parser.add_subparsers(dest="markets_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="parse a list file and say whether a tick would take it")
    check.add_argument("file", type=Path)
    for name, text in (("put", "check a list file, then upload it: the next tick reads it (no redeploy)"),
                       ("get", "print the list a tick would read now")):
        action = actions.add_parser(name, help=text)
        if name == "put":
            action.add_argument("file", type=Path)
        action.add_argument("--bucket", help=f"the stack's DataBucketName (default with --local: {LOCAL_BUCKET})")
        action.add_argument("--key", default=DEFAULT_KEY, help=f"the stack's MarketListKey (default {DEFAULT_KEY})")
        action.add_argument("--local", action="store_true", help="the local stack (`traderai local`)")
        action.add_argument("--endpoint-url", help="S3 endpoint (default: AWS; --local: moto)")
    parser.set_defaults(func=run_markets)


def run_markets(args: argparse.Namespace) -> int:
    try:
        if args.markets_command == "check":
            markets = parse_market_list(args.file.read_bytes(), str(args.file))
            print(f"{args.file}: {len(markets):,} markets, valid")
            return 0
        s3, bucket = _client(args)
        store = S3MarketList(s3, bucket, args.key)
        if args.markets_command == "put":
            markets = parse_market_list(args.file.read_bytes(), str(args.file))
            version = store.write(markets)
            print(f"{store.source}: {len(markets):,} markets uploaded (version {version or 'unversioned'}); "
                  "the next tick plans over them")
            return 0
        listed = store.read()
        print(f"# {listed.source}: {len(listed.markets):,} markets (version {listed.version})")
        print("\n".join(listed.markets))
        return 0
    except (MarketListError, OSError) as exc:
        print(f"traderai markets {args.markets_command}: {exc}", file=sys.stderr)
        return 1
