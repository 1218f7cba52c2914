"""The optional alert webhook: one JSON POST per alert, best effort.

Alerts are stored and logged before they are posted, so an endpoint that is down, slow or
rejects the request costs one WARNING line and at most WEBHOOK_TIMEOUT_S, never the batch or
the run. Webhook URLs carry secrets (basic auth, `?token=`, Slack-style tokens in the path), so
a logged URL keeps only its scheme, host and port.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from http.client import HTTPException
from urllib.parse import unquote, urlsplit, urlunsplit

from ecom_assets.monitoring.logs import LogSink

WEBHOOK_TIMEOUT_S = 3.0


def redact_url(url: str) -> str:
    """`scheme://host[:port]/…`: no userinfo, path, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port is still part of what we must not echo
        port = ""
    hidden = "/…" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The URL without userinfo, and the Basic Authorization header it carried (urllib would
    take `user:pass@host` for a host name)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, {"Authorization": "Basic " + base64.b64encode(userinfo.encode()).decode()}


def _reason(exc: Exception) -> str:
    """Why a post failed, without the exception text that may quote the URL."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, OSError):
        return exc.reason.strerror or type(exc.reason).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def post_json(
    url: str, payload: Mapping[str, object], log: LogSink, timeout_s: float = WEBHOOK_TIMEOUT_S
) -> bool:
    """POST payload as JSON; True on a 2xx answer. Never raises: a failure is a WARNING line."""
    if urlsplit(url).scheme not in ("http", "https"):
        log.warning(f"webhook {redact_url(url)} skipped: not an http(s) URL")
        return False
    target, auth = split_credentials(url)
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        target,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "ecom-alerts", **auth},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            response.read()
            return True
    except (OSError, ValueError, HTTPException) as exc:
        log.warning(f"webhook {redact_url(url)} failed: {_reason(exc)}; the alert is stored")
        return False
