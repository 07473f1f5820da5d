"""A small StreamChat-compatible server for tests: the real `stream-chat` SDK talks to it over real HTTP.

It answers the server API's "send message" (`POST /channels/{type}/{id}/message`) as StreamChat
does: the server token must be signed with the app's secret, and a second message with an id it
already holds is refused (400, code 4, "a message with ID ... already exists"). It records every
request and every message it keeps, and, when told to, answers a channel's posts with 429 (with
Retry-After), 500, or never answers; `delay_seconds` makes it slow to answer after keeping a message.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.local_server import LocalServer


@dataclass(frozen=True)
class Received:
    """A message the server kept."""

    id: str
    cid: str
    text: str
    user_id: str
    api_key: str


@dataclass(frozen=True)
class Post:
    """One request to send a message, with the status it was answered (0: never answered) and when."""

    cid: str
    message_id: str
    status: int
    at: float


@dataclass
class FakeStreamChat:
    """Run with `with FakeStreamChat({"key": "secret"}) as server:`; `server.base_url` is for the SDK.

    `faults[cid]` holds what the channel's next posts get ("429", "500", "hang"); `always[cid]` what
    every post gets once those are used up ("ok" when unset).
    """

    apps: dict[str, str]
    retry_after: str = "1"
    delay_seconds: float = 0.0
    faults: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    always: dict[str, str] = field(default_factory=dict)
    messages: dict[str, Received] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)
    port: int = 0
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kept_in(self, cid: str) -> list[Received]:
        return [message for message in list(self.messages.values()) if message.cid == cid]

    def posts_to(self, cid: str) -> list[Post]:
        return [post for post in list(self.posts) if post.cid == cid]

    def __enter__(self) -> FakeStreamChat:
        app = FastAPI()

        @app.post("/channels/{channel_type}/{channel_id}/message")
        async def send_message(channel_type: str, channel_id: str, request: Request) -> JSONResponse:
            cid = f"{channel_type}:{channel_id}"
            body: dict[str, Any] = await request.json()
            message = body.get("message") or {}
            message_id = str(message.get("id", ""))
            refusal = self._authenticate(request)
            if refusal is not None:
                return self._answer(cid, message_id, refusal)
            fault = self.faults[cid].popleft() if self.faults[cid] else self.always.get(cid, "ok")
            if fault == "hang":
                self.posts.append(Post(cid, message_id, 0, time.monotonic()))
                while not self._stopping.is_set():
                    await asyncio.sleep(0.05)
                return JSONResponse({}, status_code=503)
            if fault == "429":
                return self._answer(cid, message_id, _error(429, 9, "Too many requests, check response headers"),
                                    {"Retry-After": self.retry_after})  # fmt: skip
            if fault == "500":
                return self._answer(cid, message_id, _error(500, -1, "internal error"))
            if message_id in self.messages:
                return self._answer(cid, message_id, _error(400, 4, f'SendMessage failed with error: "a message '
                                                            f'with ID {message_id} already exists"'))  # fmt: skip
            # The server API takes the sender as message.user.id (what the SDK sends) or message.user_id.
            user_id = str((message.get("user") or {}).get("id") or message.get("user_id") or "")
            kept = Received(message_id, cid, str(message.get("text", "")), user_id, request.query_params["api_key"])
            self.messages[message_id] = kept
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            created = {"id": message_id, "cid": cid, "text": kept.text, "type": "regular",
                       "user": {"id": kept.user_id}, "created_at": "2026-11-20T21:00:00Z"}  # fmt: skip
            return self._answer(cid, message_id, JSONResponse({"message": created, "duration": "1.00ms"}, 201))

        self._local = LocalServer(app, "fake StreamChat")
        self._local.start()
        self.port = self._local.port
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._local.stop()

    def _authenticate(self, request: Request) -> JSONResponse | None:
        """StreamChat's server auth: the app's api_key as a parameter, a JWT signed with its secret."""
        secret = self.apps.get(request.query_params.get("api_key", ""))
        if secret is None:
            return _error(401, 2, "api_key not found")
        try:
            claims = jwt.decode(request.headers.get("authorization", ""), secret, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            return _error(401, 5, "JWTAuth error: signature is not valid")
        if claims.get("server") is not True:
            return _error(403, 17, "a server token is required")
        return None

    def _answer(
        self, cid: str, message_id: str, response: JSONResponse, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        response.headers.update(headers or {})
        self.posts.append(Post(cid, message_id, response.status_code, time.monotonic()))
        return response


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "StatusCode": status, "duration": "0.10ms"}, status)
