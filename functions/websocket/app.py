"""Placeholder so the template builds; the websocket handler is written elsewhere."""

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise NotImplementedError
