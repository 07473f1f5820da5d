"""The offline provider: all-MiniLM-L6-v2 (384 dimensions) on ONNX Runtime, no network, no torch."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Sequence
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
SUB_BATCH = 16  # texts per model run, after sorting a batch by length


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
    """Embeds on this machine's CPU; `threads` bounds the cores one batch may use."""

    def __init__(self, cache: Path, variant: str = "int8", threads: int = 2, *, spin: bool = False) -> None:
        self.model = f"{MODEL_NAME}-{variant}" if variant != "fp32" else MODEL_NAME
        self.dimensions = DIMENSIONS
        self.max_batch = 128
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # By default idle worker threads sleep instead of spinning for more work: the model shares
        # the cores with Postgres, Kafka and the other services, and with two busy processes beside
        # it spinning doubled its CPU per text (3.0 against 1.6 ms in batches of 32). On an idle
        # machine spinning is about a seventh faster (docs/embed.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self._session = onnxruntime.InferenceSession(
            str(onnx_model(cache, variant)), options, providers=["CPUExecutionProvider"]
        )
        self._unpadded = Tokenizer.from_file(str(model_directory() / "tokenizer.json"))
        self._unpadded.enable_truncation(MAX_TOKENS)
        self._unpadded.no_padding()
        # One batch at a time: ONNX Runtime already spreads a batch over the threads it has.
        self._lock = asyncio.Lock()

    def embed_now(self, texts: Sequence[str]) -> list[Embedding]:
        """Unit vectors for `texts`, computed in the calling thread; texts past 256 tokens are truncated."""
        if not texts:
            return []
        encodings = self._unpadded.encode_batch(list(texts))
        # Texts of similar length run together: padding a short text to a long one is wasted work.
        order = sorted(range(len(texts)), key=lambda index: len(encodings[index].ids))
        results: list[Embedding | None] = [None] * len(texts)
        for start in range(0, len(order), SUB_BATCH):
            chosen = order[start : start + SUB_BATCH]
            width = max(len(encodings[index].ids) for index in chosen)
            ids = np.zeros((len(chosen), width), dtype=np.int64)
            mask = np.zeros((len(chosen), width), dtype=np.int64)
            for row, index in enumerate(chosen):
                tokens = encodings[index].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            (vectors,) = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
            for index, vector in zip(chosen, vectors, strict=True):
                results[index] = Embedding(np.asarray(vector, dtype=np.float32), bool(encodings[index].overflowing))
        return [result for result in results if result is not None]

    async def embed(self, texts: Sequence[str]) -> list[Embedding]:
        async with self._lock:
            return await asyncio.to_thread(self.embed_now, texts)

    async def close(self) -> None:
        return None
