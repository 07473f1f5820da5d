"""The offline provider: all-MiniLM-L6-v2 (384 dimensions) on ONNX Runtime, no network, no torch."""

from __future__ import annotations

import asyncio
import fcntl
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from shared.embedding.minilm_onnx import build_fp32, build_int8, model_directory
from shared.embedding.provider import Embedding

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # the sequence length sentence-transformers uses for this model
VARIANTS = ("fp32", "int8")
# A model run holds texts of about one length, at most this many tokens (texts x the longest's
# tokens, padding included) and at most RUN_TEXTS texts: a run's activations then stay in the
# core's cache. Against runs of 16 texts, the model alone embedded passages of ~130 tokens a fifth
# faster (one a run) and fan messages of ~20 tokens 7 % faster (docs/embed.md).
RUN_TOKENS = 256
RUN_TEXTS = 16


def onnx_model(cache: Path, variant: str) -> Path:
    """The ONNX file of `variant`, built into `cache` on first use (under a lock: one builder at a time)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{MODEL_NAME}.{variant}.onnx"
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fp32 = cache / f"{MODEL_NAME}.fp32.onnx"
        if not fp32.exists():
            build_fp32(model_directory(), fp32)
        if variant == "int8" and not target.exists():
            build_int8(fp32, target)
    return target


class LocalEmbedder:
    """Embeds on this machine's CPU, on `threads` cores at most: one single-threaded session of the
    model per core, each taking its share of a batch's runs."""

    def __init__(self, cache: Path, variant: str = "int8", threads: int = 2) -> None:
        self.model = f"{MODEL_NAME}-{variant}" if variant != "fp32" else MODEL_NAME
        self.dimensions = DIMENSIONS
        self.max_batch = 128
        options = onnxruntime.SessionOptions()
        # Sessions of one thread each, working on different texts. One session of two threads splits
        # every matrix product between them and waits for the slower half, so whenever Postgres,
        # Kafka or the service took a core for a moment the other one waited too: end to end, beside
        # the rest of the stack, two sessions of one thread embedded a seventh more (docs/embed.md);
        # alone, on a quiet machine, the two do the same. A session of one thread has no idle
        # threads to spin or sleep.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        model = str(onnx_model(cache, variant))
        self._sessions = [
            onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            for _ in range(max(threads, 1))
        ]
        # The calling thread works with the first session, these threads with the others.
        self._helpers = ThreadPoolExecutor(len(self._sessions) - 1) if len(self._sessions) > 1 else None
        self._unpadded = Tokenizer.from_file(str(model_directory() / "tokenizer.json"))
        self._unpadded.enable_truncation(MAX_TOKENS)
        self._unpadded.no_padding()
        # One batch at a time, the sessions sharing it: a batch that comes while another is embedded
        # waits in this thread's queue and starts the moment the model is free, without waiting
        # for the event loop.
        self._runner = ThreadPoolExecutor(1)

    def embed_now(self, texts: Sequence[str]) -> list[Embedding]:
        """Unit vectors for `texts`, computed in the calling thread and the helpers; texts past 256
        tokens are truncated."""
        if not texts:
            return []
        encodings = self._unpadded.encode_batch(list(texts))
        # Texts of similar length run together: padding a short text to a long one is wasted work.
        # A small batch is split too, so that every session has a share. Each session takes the
        # next run when it is done with one, the longest first: a session slowed by something else
        # on its core takes fewer, and neither waits long for the other at the end.
        order = sorted(range(len(texts)), key=lambda index: len(encodings[index].ids), reverse=True)
        most = min(RUN_TEXTS, -(-len(order) // len(self._sessions)))
        runs: deque[list[int]] = deque()
        first = 0
        while first < len(order):
            # A run's first text is its longest: it sets the width every text is padded to.
            count = max(1, min(most, RUN_TOKENS // max(len(encodings[order[first]].ids), 1)))
            runs.append(order[first : first + count])
            first += count
        results: list[Embedding | None] = [None] * len(texts)

        def work(session: onnxruntime.InferenceSession) -> None:
            while runs:
                try:
                    chosen = runs.popleft()
                except IndexError:  # another session took the last one
                    return
                width = len(encodings[chosen[0]].ids)
                ids = np.zeros((len(chosen), width), dtype=np.int64)
                mask = np.zeros((len(chosen), width), dtype=np.int64)
                for row, index in enumerate(chosen):
                    tokens = encodings[index].ids
                    ids[row, : len(tokens)] = tokens
                    mask[row, : len(tokens)] = 1
                (vectors,) = session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
                for index, vector in zip(chosen, vectors, strict=True):
                    results[index] = Embedding(np.asarray(vector, dtype=np.float32), bool(encodings[index].overflowing))

        lanes = min(len(self._sessions), len(runs))
        helped = [self._helpers.submit(work, session) for session in self._sessions[1:lanes]] if self._helpers else []
        work(self._sessions[0])
        for done in helped:
            done.result()
        return [result for result in results if result is not None]

    async def embed(self, texts: Sequence[str]) -> list[Embedding]:
        return await asyncio.get_running_loop().run_in_executor(self._runner, self.embed_now, texts)

    async def close(self) -> None:
        for pool in (self._runner, self._helpers):
            if pool is not None:
                pool.shutdown(wait=False)
