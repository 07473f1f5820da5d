"""The Bearer-key dependency of the API services, with one cache of key -> tenant per process."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated
from uuid import UUID

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared import tenants
from shared.http.problems import HTTPProblem

Lookup = Callable[[str], Awaitable[UUID | None]]
Clock = Callable[[], float]

bearer = HTTPBearer(auto_error=False, description="An API key from `chorus keys create TENANT`.")


class KeyCache:
    """API key -> tenant, remembered for `seconds`: a revoked key stops working within that time.

    Only keys that name a tenant are remembered, so a key created a moment ago works at once.
    """

    def __init__(self, lookup: Lookup, seconds: float, clock: Clock = time.monotonic, capacity: int = 10_000) -> None:
        self.lookup = lookup
        self.seconds = seconds
        self.clock = clock
        self.capacity = capacity
        # Keyed by the key's hash: the clear key is not kept in memory longer than the request.
        self._known: dict[bytes, tuple[UUID, float]] = {}

    async def tenant(self, key: str) -> UUID | None:
        digest = tenants.hash_secret(key)
        known = self._known.get(digest)
        if known is not None and known[1] > self.clock():
            return known[0]
        tenant_id = await self.lookup(key)
        if tenant_id is None:
            self._known.pop(digest, None)
            return None
        if len(self._known) >= self.capacity:
            # Whole, not one by one: a flood of distinct valid keys is rare, and all are looked up again.
            self._known.clear()
        self._known[digest] = (tenant_id, self.clock() + self.seconds)
        return tenant_id


def use_api_keys(app: FastAPI, seconds: float) -> None:
    """Answer `Tenant` in `app` from its Postgres pool (open once the app started), through one cache."""

    async def lookup(key: str) -> UUID | None:
        return await tenants.tenant_for_api_key(app.state.resources.pool, key)

    app.state.keys = KeyCache(lookup, seconds)


async def authenticated_tenant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> UUID:
    """The tenant of the request's API key; 401 without a valid one."""
    tenant_id = None
    if credentials is not None:
        keys: KeyCache = request.app.state.keys
        tenant_id = await keys.tenant(credentials.credentials.strip())
    if tenant_id is None:
        raise HTTPProblem(401, "an Authorization: Bearer <API key> header with a valid key is required",
                          headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    return tenant_id


Tenant = Annotated[UUID, Depends(authenticated_tenant)]
