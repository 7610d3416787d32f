"""A DynamoDB stand-in for benchmarks: `python bench/dynamodb_standin.py --latency 0.01 --tables '{...}'`.

It speaks DynamoDB's JSON protocol on loopback (its own process, prints its endpoint) for what the
broadcast path sends: Query (a partition key equality, Limit, ExclusiveStartKey, ProjectionExpression),
BatchWriteItem, GetItem, PutItem, DeleteItem. Items live in memory by table and partition, so a Query
reads only its partition, as DynamoDB does (moto's Query walks every item of the table, page after page).
Each request is answered after `--latency` seconds (DynamoDB's own time, assumed). It checks no
credentials and no conditions, and knows no other operation: a benchmark's stand-in, not an emulator.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Key = tuple[str, str]


class Tables:
    def __init__(self, schemas: dict[str, list[str]]) -> None:
        self.schemas = schemas  # table -> [hash key name, range key name (optional)]
        self.items: dict[str, dict[str, dict[str, dict[str, Any]]]] = {table: {} for table in schemas}
        self.lock = threading.Lock()

    def key_of(self, table: str, item: dict[str, Any]) -> Key:
        names = self.schemas[table]
        hash_value = json.dumps(item[names[0]], sort_keys=True)
        range_value = json.dumps(item[names[1]], sort_keys=True) if len(names) > 1 else ""
        return hash_value, range_value

    def put(self, table: str, item: dict[str, Any]) -> None:
        hash_value, range_value = self.key_of(table, item)
        with self.lock:
            self.items[table].setdefault(hash_value, {})[range_value] = item

    def delete(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        hash_value, range_value = self.key_of(table, key)
        with self.lock:
            return self.items[table].get(hash_value, {}).pop(range_value, None)

    def get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        hash_value, range_value = self.key_of(table, key)
        with self.lock:
            return self.items[table].get(hash_value, {}).get(range_value)

    def query(self, request: dict[str, Any]) -> dict[str, Any]:
        table = request["TableName"]
        names = request.get("ExpressionAttributeNames", {})
        values = request.get("ExpressionAttributeValues", {})
        match = re.fullmatch(r"\s*(#?\w+)\s*=\s*(:\w+)\s*", request["KeyConditionExpression"])
        if match is None or names.get(match.group(1), match.group(1)) != self.schemas[table][0]:
            raise ValueError(f"only `<hash key> = :value` is served: {request['KeyConditionExpression']}")
        hash_value = json.dumps(values[match.group(2)], sort_keys=True)
        with self.lock:
            partition = dict(self.items[table].get(hash_value, {}))
        ordered = sorted(partition)
        start = request.get("ExclusiveStartKey")
        if start:
            after = self.key_of(table, start)[1]
            ordered = [key for key in ordered if key > after]
        limit = request.get("Limit") or len(ordered)
        page = ordered[:limit]
        projection = request.get("ProjectionExpression")
        fields = ([names.get(f.strip(), f.strip()) for f in projection.split(",")] if projection else None)
        items = [partition[key] if fields is None else {f: partition[key][f] for f in fields if f in partition[key]}
                 for key in page]
        reply: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(items)}
        if len(ordered) > limit:
            last = partition[page[-1]]
            reply["LastEvaluatedKey"] = {name: last[name] for name in self.schemas[table]}
        return reply

    def answer(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        if operation == "Query":
            return self.query(request)
        if operation == "BatchWriteItem":
            for table, requests in request["RequestItems"].items():
                for write in requests:
                    if "PutRequest" in write:
                        self.put(table, write["PutRequest"]["Item"])
                    else:
                        self.delete(table, write["DeleteRequest"]["Key"])
            return {"UnprocessedItems": {}}
        if operation == "PutItem":
            self.put(request["TableName"], request["Item"])
            return {}
        if operation == "GetItem":
            item = self.get(request["TableName"], request["Key"])
            return {} if item is None else {"Item": item}
        if operation == "DeleteItem":
            self.delete(request["TableName"], request["Key"])
            return {}
        raise ValueError(f"{operation} is not served by this stand-in")


def serve(tables: Tables, latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
            time.sleep(latency)
            try:
                status, reply = 200, tables.answer(operation, json.loads(body or b"{}"))
            except (KeyError, ValueError) as exc:
                status, reply = 400, {"__type": "com.amazon.coral.validate#ValidationException", "message": str(exc)}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "standin")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.010)
    parser.add_argument("--tables", required=True, help='{"table": ["hash key", "range key"], ...}')
    args = parser.parse_args()
    server = serve(Tables(json.loads(args.tables)), args.latency)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
