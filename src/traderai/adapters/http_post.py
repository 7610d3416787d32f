"""One HTTP POST with a hard timeout, answered as a `core.notify.Reply` (never raises for the receiver's
faults): the notifications' only way out to Telegram and webhooks. Standard library only.

Redirects are not followed (a webhook that moves must be re-added), and the reply body is read up to
`MAX_REPLY_BYTES`: a receiver cannot make the sender hold a large or endless body.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from functools import lru_cache

from traderai.core.notify import Reply

MAX_REPLY_BYTES = 16_384


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@lru_cache(maxsize=1)
def _opener() -> urllib.request.OpenerDirector:
    """Built at the first post, not at import: its HTTPS handler loads the CA certificates (~30 ms)."""
    return urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
    """POST `body` to `url`; the reply's status and (head of the) body, or why there was none."""
    if not url.startswith(("https://", "http://")):  # the callers validated it; never file:// or custom schemes
        return Reply(None, error="invalid_url")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    try:
        with _opener().open(request, timeout=timeout) as response:
            return Reply(response.status, response.read(MAX_REPLY_BYTES))
    except urllib.error.HTTPError as exc:
        try:
            content = exc.read(MAX_REPLY_BYTES)
        except (OSError, ValueError):
            content = b""
        return Reply(exc.code, content, retry_after_header=exc.headers.get("Retry-After") if exc.headers else None)
    except TimeoutError:
        return Reply(None, error="timeout")
    except urllib.error.URLError as exc:
        timed_out = isinstance(exc.reason, (TimeoutError, socket.timeout))
        return Reply(None, error="timeout" if timed_out else "connection_error")
    except (ConnectionError, OSError):
        return Reply(None, error="connection_error")
