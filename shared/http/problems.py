"""One error body for every 4xx and 503 of the API services: RFC 9457 problem details."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from shared.errors import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# Where FastAPI puts a request value; the field's own name follows it.
LOCATIONS = ("query", "body", "path", "header", "cookie")
MAX_FIELD_PROBLEMS = 100
RETRY_SOON = {"Retry-After": "1"}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# What each refusal means, unless a route says more (`problems((404, "No such cluster."))`).
MEANINGS = {
    400: "The request is invalid; `detail` says why and `errors` names each field.",
    401: "No valid credentials.",
    404: "There is no such thing for this tenant.",
    409: "The request conflicts with what was done before.",
    413: "The body is larger than the limit (also once gunzipped), or holds too many events.",
    415: "The body's Content-Encoding is neither gzip nor identity.",
    503: "Postgres, Kafka or the embedding provider did not answer; nothing was done: retry after `Retry-After`.",
}


class FieldProblem(BaseModel):
    field: str = Field(description="The parameter or body field, dotted: `limit`, `payload.user.id`.")
    problem: str = Field(description="What is wrong with it.")
    event: int | None = Field(default=None, description="`POST /v1/events`: the index of the event in the request.")


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every 4xx and 503 answer."""

    # Every field is always sent; the OpenAPI says so.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    type: str = Field(default="about:blank", description="`about:blank`: the status says what kind of problem it is.")
    title: str = Field(description="The status code's phrase: `Bad Request`.", examples=["Bad Request"])
    status: int = Field(description="The HTTP status code.", examples=[400])
    detail: str = Field(description="What went wrong with this request, in one sentence.")
    errors: list[FieldProblem] = Field(default_factory=list, description="Each invalid field, when fields are.")


class HTTPProblem(HTTPException):
    """A request refused with a problem details body: the status, one sentence, the field problems."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Sequence[FieldProblem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail, dict(headers) if headers else None)
        self.errors = list(errors)

    def __str__(self) -> str:
        return str(self.detail)


def problem_response(
    status: int, detail: str, errors: Sequence[FieldProblem] = (), headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail,
                   errors=list(errors[:MAX_FIELD_PROBLEMS]))  # fmt: skip
    return JSONResponse(body.model_dump(exclude_none=True), status, headers, media_type=PROBLEM_JSON)


def field_problems(errors: Iterable[Any]) -> list[FieldProblem]:
    """Pydantic's errors as field problems: `{"field": "limit", "problem": "Input should be ..."}`."""
    found = []
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = f"{error.get('ctx', {}).get('error', 'invalid')} at character {error['loc'][-1]}"
            found.append(FieldProblem(field="body", problem=f"not valid JSON: {reason}"))
            continue
        location = [str(part) for part in error.get("loc", ())]
        if len(location) > 1 and location[0] in LOCATIONS:
            location = location[1:]
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        name, colon, rest = message.partition(": ")
        if not location and colon and name.isidentifier():
            # A check across fields names the one it blames: "q: keyword search needs a query text".
            location, message = [name], rest
        found.append(FieldProblem(field=".".join(location) or "request", problem=message))
    return found


def describe(problems: Sequence[FieldProblem]) -> str:
    """The first few problems as one sentence each, naming the field: "limit: Input should be ..."."""
    return "; ".join(f"{problem.field}: {problem.problem}" for problem in problems[:5]) or "the request is invalid"


def invalid(errors: Iterable[Any]) -> HTTPProblem:
    """A 400 for pydantic's `errors`."""
    problems = field_problems(errors)
    return HTTPProblem(400, describe(problems), problems)


def answer_with_problems(app: FastAPI) -> None:
    """Answer every refusal of `app` with problem details; invalid parameters are a 400, not FastAPI's 422."""

    async def refuse(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        errors = error.errors if isinstance(error, HTTPProblem) else []
        return problem_response(error.status_code, str(error.detail), errors, error.headers)

    async def refuse_invalid(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problem = invalid(error.errors())
        return problem_response(400, str(problem.detail), problem.errors)

    app.add_exception_handler(HTTPException, refuse)
    app.add_exception_handler(RequestValidationError, refuse_invalid)
    answer_unavailable(app)


def answer_unavailable(app: FastAPI) -> None:
    """Postgres or Kafka failing during a request is a 503 with Retry-After: the client retries
    later; nothing was accepted."""

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        log.warning("a dependency failed during a request", extra={"path": request.url.path, "error": repr(error)})
        sentence = f"a dependency of the service is unavailable ({type(error).__name__}); retry shortly"
        return problem_response(503, sentence, headers=RETRY_SOON)

    for error_class in TRANSIENT_ERRORS:
        app.add_exception_handler(error_class, unavailable)


def problems(*codes: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses with a problem details body: `problems(400, (404, "No such cluster."))`."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        status, meaning = code if isinstance(code, tuple) else (code, MEANINGS[code])
        response: dict[str, Any] = {"model": Problem, "description": meaning}
        if status == 503:
            response["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
        responses[status] = response
    return responses


def declare_problems(app: FastAPI) -> None:
    """Make `app`'s OpenAPI say what it answers: problem details as application/problem+json, and
    no 422 (FastAPI declares one on every route with parameters; `answer_with_problems` answers 400)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = generate()
            _rewrite(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _rewrite(schema: dict[str, Any]) -> None:
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for response in responses.values():
                content = response.get("content", {})
                if content.get("application/json", {}).get("schema") == PROBLEM_REF:
                    content[PROBLEM_JSON] = content.pop("application/json")
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
