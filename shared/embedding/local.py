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

    def __init__(self, cache: Path, variant: str = "int8", threads: int = 2) -> None:
        self.model = f"{MODEL_NAME}-{variant}" if variant != "fp32" else MODEL_NAME
        self.dimensions = DIMENSIONS
        self.max_batch = 128
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(onnx_model(cache, variant)), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(model_directory() / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        # One batch at a time: ONNX Runtime already spreads a batch over the threads it has.
        self._lock = asyncio.Lock()

    def embed_now(self, texts: Sequence[str]) -> list[Embedding]:
        """Unit vectors for `texts`, computed in the calling thread; texts past 256 tokens are truncated."""
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        (vectors,) = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        return [
            Embedding(np.asarray(vector, dtype=np.float32), truncated=bool(encoding.overflowing))
            for vector, encoding in zip(vectors, encodings, strict=True)
        ]

    async def embed(self, texts: Sequence[str]) -> list[Embedding]:
        async with self._lock:
            return await asyncio.to_thread(self.embed_now, texts)

    async def close(self) -> None:
        return None
