"""What the DynamoDB adapters share: one pynamodb model class per table, in the region botocore would use.

pynamodb binds a model class to its table through `Meta`, so each store builds a subclass of its item
class per (table, region, host) once per container and reuses it (its connection pool with it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from botocore.session import get_session  # pynamodb imports botocore already: no extra cold-start cost
from pynamodb.exceptions import PutError
from pynamodb.models import Model

_models: dict[tuple[object, ...], type[Model]] = {}
_lock = threading.Lock()


def region_default() -> str | None:
    """The region botocore resolves: AWS_DEFAULT_REGION if set (Lambda sets it), else the config file's, or None.

    The variable is botocore's first source, read here as botocore reads it: a botocore session only to read
    it costs ~10 ms of a cold start's first call (pynamodb builds its own for the client).
    """
    if "AWS_DEFAULT_REGION" in os.environ:
        return os.environ["AWS_DEFAULT_REGION"]
    region: str | None = get_session().get_config_variable("region")
    return region


def table_model[M: Model](base: type[M], table_name: str, region: str | None = None, host: str | None = None, *,
                          attributes: Callable[[], Mapping[str, Any]] | None = None, **meta: Any) -> type[M]:
    """`base` bound to `table_name` (built once per table, region, host and `meta`, then reused).

    `attributes` adds class attributes (indexes, typed fields) when the class is first built; `meta`
    adds `Meta` options (e.g. `max_pool_connections`).
    """
    region = region or region_default()
    key = (base, table_name, region, host, tuple(sorted(meta.items())))
    with _lock:
        model = _models.get(key)
        if model is None:
            options = {"table_name": table_name, "region": region, "host": host, **meta}
            namespace = {"__module__": base.__module__, "Meta": type("Meta", (), options), **(attributes or dict)()}
            model = _models[key] = type(base.__name__.lstrip("_"), (base,), namespace)
    return cast("type[M]", model)  # built as a subclass of `base`


BATCH_LIMIT = 25  # requests per BatchWriteItem
BATCH_ATTEMPTS = 8  # rounds for the unprocessed rest, ~2.5 s of backoff in all, then the write fails


def batch_write(model: type[Model], puts: Iterable[Model] = (), deletes: Iterable[Model] = (), *,
                sleep: Callable[[float], None] = time.sleep) -> None:
    """Put and delete these items of `model`'s table with BatchWriteItem, 25 requests a call.

    DynamoDB may answer a batch with some of it unprocessed (throttled, not failed): those are sent
    again after 20 ms, 40 ms, ... up to BATCH_ATTEMPTS rounds; what is still unprocessed then raises
    PutError, so nothing is dropped silently. pynamodb's own `batch_write()` resends without a pause.
    """
    keys = {attribute.attr_name for attribute in model.get_attributes().values()
            if attribute.is_hash_key or attribute.is_range_key}
    requests = [{"PutRequest": {"Item": item.serialize()}} for item in puts]
    for item in deletes:
        key = {name: value for name, value in item.serialize(null_check=False).items() if name in keys}
        requests.append({"DeleteRequest": {"Key": key}})
    connection = model._get_connection()  # pynamodb's table connection: its pool, its region, its host
    table = connection.table_name
    for start in range(0, len(requests), BATCH_LIMIT):
        pending = requests[start:start + BATCH_LIMIT]
        for attempt in range(BATCH_ATTEMPTS):
            if attempt:
                sleep(0.02 * 2 ** (attempt - 1))
            reply = connection.connection.dispatch("BatchWriteItem", {"RequestItems": {table: pending}})
            pending = (reply or {}).get("UnprocessedItems", {}).get(table, [])
            if not pending:
                break
        else:
            raise PutError(f"{table}: {len(pending)} writes still unprocessed after {BATCH_ATTEMPTS} BatchWriteItem "
                           "rounds (throttled)")
