"""`traderai keys create|list|revoke`: manage the API keys of the HTTP and WebSocket APIs.

Runs with the operator's AWS credentials against the stack's ApiKeys table (`--table`, or the
`API_KEYS_TABLE` environment variable; the stack output `ApiKeysTableName` names it). `create` prints
the key once, on stdout, and stores only its salted SHA-256; it cannot be shown again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from traderai.adapters.api_keys import ApiKeyStore, UnknownKey
from traderai.services.auth import new_key


def add_keys_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("keys", help="create, list and revoke API keys",
                                   description="Manage API keys (stored hashed in the ApiKeys table).")
    parser.add_argument("--table", default=os.environ.get("API_KEYS_TABLE"),
                        help="ApiKeys table name (default: $API_KEYS_TABLE; stack output ApiKeysTableName)")
    parser.add_argument("--region", help="AWS region of the table (default: the AWS configuration's)")
    parser.add_argument("--endpoint-url", help="DynamoDB endpoint (e.g. a local moto server)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("name", help="a label saying whose key this is, e.g. 'trading-bot'")
    actions.add_parser("list", help="list keys (id, name, created, revoked): never a secret")
    revoke = actions.add_parser("revoke", help="revoke a key by id (takes effect within 5 minutes)")
    revoke.add_argument("key_id", help="the 16 hex characters after 'tai_'")
    parser.set_defaults(func=run_keys)


def run_keys(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    if not args.table:
        print("traderai keys: give --table or set API_KEYS_TABLE (stack output ApiKeysTableName)", file=sys.stderr)
        return 2
    store = ApiKeyStore(args.table, region=args.region, host=args.endpoint_url)
    now = datetime.now(UTC)
    if args.action == "create":
        key, record = new_key(args.name, now)
        store.add(record)
        print(f"created key {record.key_id} ({record.name}); shown once, store it now:", file=sys.stderr)
        print(key)
        return 0
    if args.action == "list":
        print(json.dumps([record.public() for record in store.all()], indent=2))
        return 0
    try:
        record = store.revoke(args.key_id, now)
    except UnknownKey as exc:
        print(f"traderai keys revoke: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(record.public(), indent=2))
    return 0
