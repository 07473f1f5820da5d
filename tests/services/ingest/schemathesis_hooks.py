"""Schemathesis hooks for ingest's fuzz run: the tenant's credentials on every request, each
StreamChat body signed as StreamChat signs it, and NDJSON bodies sent as text."""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from schemathesis.core import NOT_SET

from bench.webhooks import signature

# Set by tests/services/ingest/test_openapi_fuzz.py for the st process.
CREDENTIALS = "CHORUS_FUZZ_CREDENTIALS"


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    credentials = json.loads(os.environ[CREDENTIALS])
    headers = dict(case.headers or {})
    headers["Authorization"] = f"Bearer {credentials['api_key']}"
    headers["X-Chorus-Token"] = credentials["tavus_token"]
    if case.path == "/webhooks/streamchat" and case.body is not NOT_SET and not isinstance(case.body, bytes):
        # The signature covers the exact bytes sent, so the body goes out as these bytes.
        case.body = json.dumps(case.body).encode()
        headers["X-Api-Key"] = credentials["app_key"]
        headers["X-Signature"] = signature(case.body, credentials["app_secret"])
    case.headers = headers
