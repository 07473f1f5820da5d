"""A small OpenAI-compatible embeddings server for tests: real HTTP, scripted faults.

It answers POST /v1/embeddings like the real API (vectors derived from each input's hash, so equal
inputs get equal vectors) and, when told to, answers 429 with Retry-After, 500, or hangs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.embedding.hashed import HashEmbedder
from tests.local_server import LocalServer


@dataclass
class FakeOpenAI:
    """Run with `with FakeOpenAI() as server:`; `server.faults` holds what the next requests get."""

    dimensions: int = 384
    faults: deque[str] = field(default_factory=deque)  # "429", "500", "hang", "ok"
    always: str = "ok"
    inputs: list[str] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    port: int = 0  # the port the server listens on, known once it is entered

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeOpenAI:
        app = FastAPI()
        hasher = HashEmbedder(self.dimensions)

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> JSONResponse:
            body: dict[str, Any] = await request.json()
            fault = self.faults.popleft() if self.faults else self.always
            if fault == "hang":
                await asyncio.sleep(30)
            if fault == "429":
                self.answers.append(429)
                return JSONResponse(
                    {"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0.2"}
                )
            if fault == "500":
                self.answers.append(500)
                return JSONResponse({"error": {"message": "boom"}}, status_code=500)
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            self.inputs.extend(texts)
            self.answers.append(200)
            data = [{"object": "embedding", "index": index, "embedding": hasher.vector(text).tolist()}
                    for index, text in enumerate(texts)]  # fmt: skip
            return JSONResponse({"object": "list", "data": data, "model": body["model"],
                                 "usage": {"prompt_tokens": 0, "total_tokens": 0}})  # fmt: skip

        self._local = LocalServer(app, "fake OpenAI")
        self._local.start()
        self.port = self._local.port
        return self

    def __exit__(self, *_: object) -> None:
        self._local.stop()
