"""The HTTP edge without a broker or database: the key cache, problem details, the OpenAPI they declare."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID, uuid4

import pytest
from fastapi import FastAPI, HTTPException, Query
from fastapi.testclient import TestClient

from shared.http.keys import KeyCache, Tenant
from shared.http.problems import (
    PROBLEM_JSON,
    FieldProblem,
    HTTPProblem,
    answer_with_problems,
    declare_problems,
    field_problems,
    problems,
)
from shared.tenants import hash_secret

KEY = "chorus_a-key-of-the-test"


class Keys:
    """The lookup a cache asks: a dict of valid keys, counting the questions."""

    def __init__(self) -> None:
        self.tenants: dict[str, UUID] = {KEY: uuid4()}
        self.lookups = 0

    async def __call__(self, key: str) -> UUID | None:
        self.lookups += 1
        return self.tenants.get(key)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_is_looked_up_once_per_period_and_a_revoked_key_stops_working_after_it() -> None:
    keys, clock = Keys(), Clock()
    cache = KeyCache(keys, seconds=30, clock=clock)
    tenant = keys.tenants[KEY]
    assert [await cache.tenant(KEY) for _ in range(3)] == [tenant] * 3
    assert keys.lookups == 1
    del keys.tenants[KEY]
    clock.now += 29.9
    assert await cache.tenant(KEY) == tenant, "trusted for the whole period"
    clock.now += 0.2
    assert await cache.tenant(KEY) is None, "revoked: refused once the period is over"
    assert keys.lookups == 2


async def test_an_unknown_key_is_asked_every_time_so_a_new_key_works_at_once() -> None:
    keys, clock = Keys(), Clock()
    cache = KeyCache(keys, seconds=30, clock=clock)
    assert await cache.tenant("chorus_new") is None
    keys.tenants["chorus_new"] = uuid4()
    assert await cache.tenant("chorus_new") == keys.tenants["chorus_new"]
    assert keys.lookups == 2


async def test_the_cache_holds_hashes_of_keys_and_stays_within_its_capacity() -> None:
    keys = Keys()
    keys.tenants.update({f"chorus_{number}": uuid4() for number in range(5)})
    cache = KeyCache(keys, seconds=30, clock=Clock(), capacity=3)
    for key in keys.tenants:
        assert await cache.tenant(key) == keys.tenants[key]
    remembered = cache._known  # what stays in memory is what this test is about
    assert 0 < len(remembered) <= 3
    assert set(remembered) <= {hash_secret(key) for key in keys.tenants}
    assert not any(key.encode() in digest for key in keys.tenants for digest in remembered)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"loc": ("query", "limit"), "msg": "Input should be less than or equal to 100"},
         FieldProblem(field="limit", problem="Input should be less than or equal to 100")),
        ({"loc": ("body", "tags", "a"), "msg": "Input should be a valid string"},
         FieldProblem(field="tags.a", problem="Input should be a valid string")),
        ({"loc": ("body",), "msg": "Field required"}, FieldProblem(field="body", problem="Field required")),
        ({"loc": (), "msg": "Value error, q: keyword search needs a query text"},
         FieldProblem(field="q", problem="keyword search needs a query text")),
        ({"type": "json_invalid", "loc": ("body", 7), "msg": "JSON decode error", "ctx": {"error": "Expecting value"}},
         FieldProblem(field="body", problem="not valid JSON: Expecting value at character 7")),
        ({"loc": (), "msg": "Value error, since is after until: 2026"},
         FieldProblem(field="request", problem="since is after until: 2026")),
    ],
)  # fmt: skip
def test_pydantic_errors_become_field_problems_named_by_field(error: dict[str, object], expected: FieldProblem) -> None:
    assert field_problems([error]) == [expected]


def _app() -> FastAPI:
    app = FastAPI()
    app.state.keys = KeyCache(Keys(), seconds=30)

    @app.get("/things/{thing_id}", responses=problems(400, 401, (404, "No such thing."), 409, 503))
    async def thing(tenant: Tenant, thing_id: UUID, limit: Annotated[int, Query(ge=1, le=10)] = 1) -> dict[str, int]:
        if limit == 2:
            raise HTTPProblem(404, f"no thing {thing_id}")
        if limit == 3:
            raise HTTPException(409, "done before")
        if limit == 4:
            raise ConnectionResetError("the database went away")
        return {"limit": limit}

    answer_with_problems(app)
    declare_problems(app)
    return app


def test_every_refusal_is_problem_details() -> None:
    client = TestClient(_app())
    auth = {"Authorization": f"Bearer {KEY}"}
    thing = f"/things/{uuid4()}"
    cases = [
        (client.get(thing, params={"limit": 11}, headers=auth), 400, "limit: Input should be less than or equal to 10"),
        (client.get("/things/not-a-uuid", headers=auth), 400, None),
        (client.get(thing), 401, "an Authorization: Bearer <API key> header with a valid key is required"),
        (client.get(thing, headers={"Authorization": "Bearer chorus_wrong"}), 401, None),
        (client.get(thing, params={"limit": 2}, headers=auth), 404, f"no thing {thing.split('/')[-1]}"),
        (client.get("/nowhere"), 404, "Not Found"),
        (client.post(thing, headers=auth), 405, "Method Not Allowed"),
        (client.get(thing, params={"limit": 3}, headers=auth), 409, "done before"),
        (client.get(thing, params={"limit": 4}, headers=auth), 503, None),
    ]
    for response, status, detail in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM_JSON, response.text
        body = response.json()
        assert set(body) == {"type", "title", "status", "detail", "errors"}, body
        assert (body["type"], body["status"]) == ("about:blank", status)
        assert body["title"] and body["detail"] and (detail is None or body["detail"] == detail), body
    invalid = cases[0][0].json()
    assert invalid["errors"] == [{"field": "limit", "problem": "Input should be less than or equal to 10"}]
    assert cases[1][0].json()["errors"][0]["field"] == "thing_id"
    assert cases[2][0].headers["www-authenticate"] == "Bearer"
    assert cases[8][0].headers["retry-after"] == "1"
    assert client.get(thing, params={"limit": 5}, headers=auth).json() == {"limit": 5}


def test_the_openapi_declares_problem_details_and_no_422() -> None:
    schema = TestClient(_app()).get("/openapi.json").json()
    responses = schema["paths"]["/things/{thing_id}"]["get"]["responses"]
    assert set(responses) == {"200", "400", "401", "404", "409", "503"}
    for status in ("400", "401", "404", "409", "503"):
        assert responses[status]["content"] == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert responses["404"]["description"] == "No such thing."
    assert "Retry-After" in responses["503"]["headers"]
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components
    assert components["Problem"]["required"] == ["type", "title", "status", "detail", "errors"]
