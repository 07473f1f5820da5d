"""Posting a message into a StreamChat channel with the official SDK, each answer told apart."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import aiohttp
from stream_chat import StreamChatAsync
from stream_chat.base.exceptions import StreamAPIException
from stream_chat.types.stream_response import StreamResponse

from services.ingest.credentials import ConnectedApp
from shared.retry import retry_after_seconds

# StreamChat's error code for a message id that exists already (HTTP 400, code 4, "a message with
# ID ... already exists"): the message was posted by an earlier attempt.
INPUT_ERROR = 4


@dataclass(frozen=True)
class Answer:
    """What one post came to: `sent` (now or before), `retry` (429, 5xx, timeout, no connection)
    or `refused` (any other 4xx: the same post would be refused again)."""

    outcome: Literal["sent", "retry", "refused"]
    kind: str  # ok, duplicate, 429, 5xx, 4xx, timeout, connection: the metric's label
    reason: str | None = None
    wait_seconds: float | None = None  # how long StreamChat asked us to wait (Retry-After)


class StreamChatError(StreamAPIException):
    """A StreamChat error answer with the wait its headers ask for."""

    def __init__(self, text: str, status_code: int, wait_seconds: float | None) -> None:
        super().__init__(text, status_code)
        self.wait_seconds = wait_seconds


class _StreamChat(StreamChatAsync):
    # The SDK's error keeps only the body and status; the headers, where Retry-After is, are gone
    # by the time it is raised, so they are read here, where the response still exists.
    async def _parse_response(self, response: aiohttp.ClientResponse) -> StreamResponse:
        try:
            return await super()._parse_response(response)
        except StreamAPIException as error:
            raise StreamChatError(error.response_text, error.status_code, wait_of(response.headers)) from None


class Poster:
    """One SDK client per connected app, kept for the life of the service (each holds a connection pool)."""

    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self.base_url = base_url
        self.timeout_seconds = timeout_seconds
        self._clients: dict[tuple[str, str], _StreamChat] = {}

    async def post(self, app: ConnectedApp, channel_cid: str, message_id: str, text: str, user_id: str) -> Answer:
        """Post `text` into `channel_cid` as `user_id`, with the message id `message_id`."""
        channel_type, _, channel_id = channel_cid.partition(":")
        if not channel_type or not channel_id:
            return Answer("refused", "4xx", f"{channel_cid!r} is not a channel cid (type:id)")
        try:
            await (
                self._client(app)
                .channel(channel_type, channel_id)
                .send_message({"id": message_id, "text": text}, user_id)
            )
        except StreamChatError as error:
            return _classify(error)
        except TimeoutError:
            return Answer("retry", "timeout", f"StreamChat did not answer within {self.timeout_seconds:g} s")
        except aiohttp.ClientError as error:
            return Answer("retry", "connection", f"could not reach StreamChat ({type(error).__name__})")
        except ValueError:
            # A success whose body is not JSON (a proxy's page, say): the message may be kept, and
            # posting it again tells, since a kept one is refused as a duplicate.
            return Answer("retry", "5xx", "StreamChat answered with a body that is not JSON")
        return Answer("sent", "ok")

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    def _client(self, app: ConnectedApp) -> _StreamChat:
        key = (app.api_key, app.api_secret)
        if key not in self._clients:
            client = _StreamChat(app.api_key, app.api_secret, timeout=self.timeout_seconds, base_url=self.base_url)
            # The SDK lets STREAM_CHAT_TIMEOUT override the timeout it is given; the setting wins here.
            client.timeout = self.timeout_seconds
            self._clients[key] = client
        return self._clients[key]


def _classify(error: StreamChatError) -> Answer:
    status = error.status_code
    message = str(getattr(error, "error_message", "")) if error.json_response else ""
    if status == 400 and getattr(error, "error_code", None) == INPUT_ERROR and "already exists" in message:
        return Answer("sent", "duplicate")
    said = message[:300] or error.response_text[:300]
    if status == 429:
        return Answer("retry", "429", f"StreamChat is rate limiting (429): {said}", error.wait_seconds)
    if status >= 500:
        return Answer("retry", "5xx", f"StreamChat failed ({status}): {said}", error.wait_seconds)
    return Answer("refused", "4xx", f"StreamChat refused the message ({status}): {said}")


def wait_of(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait that a response asks for: Retry-After (seconds or an HTTP date), else
    StreamChat's X-RateLimit-Reset (the Unix time its limit resets)."""
    if headers.get("Retry-After", "").strip():
        return retry_after_seconds(headers.get("Retry-After"))
    reset = headers.get("X-RateLimit-Reset", "").strip()
    if reset.isdigit():
        return max(int(reset) - time.time(), 0.0)
    return None
