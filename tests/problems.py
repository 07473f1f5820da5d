"""What every refusal of the API services must look like: RFC 9457 problem details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Answer(Protocol):
    """An HTTP response of httpx or of the TestClient."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def assert_problem(response: Answer, status: int, *fields: str) -> dict[str, Any]:
    """The response is problem details for `status`, naming `fields` among its field problems."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert set(body) == {"type", "title", "status", "detail", "errors"}, body
    assert (body["type"], body["status"]) == ("about:blank", status), body
    assert body["title"] and body["detail"], body
    assert all(problem["field"] and problem["problem"] for problem in body["errors"]), body
    assert set(fields) <= {problem["field"] for problem in body["errors"]}, body
    return body
