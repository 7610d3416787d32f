"""What the DynamoDB adapters share: one pynamodb model class per table, in the region botocore would use.

pynamodb binds a model class to its table through `Meta`, so each store builds a subclass of its item
class per (table, region, host) once per container and reuses it (its connection pool with it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

from botocore.session import get_session  # pynamodb imports botocore already: no extra cold-start cost
from pynamodb.models import Model

_models: dict[tuple[object, ...], type[Model]] = {}
_lock = threading.Lock()


def region_default() -> str | None:
    """The region botocore resolves (AWS_REGION, AWS_DEFAULT_REGION, the config file), or None."""
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
