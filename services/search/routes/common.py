"""What the search routers share: the service's open resources."""

from __future__ import annotations

from fastapi import Request

from shared.service import Resources


def resources(request: Request) -> Resources:
    found: Resources = request.app.state.resources
    return found
