"""Shared fixtures. Tests that need ../shared/data are marked `shared` and skip when it is absent."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tiny settings that make an end-to-end run take seconds.
TINY_RUN = [
    "data.generated.train_sentences=3000", "data.generated.dev_sentences=200", "data.generated.test_sentences=50",
    "data.generated.pairs_per_paradigm=20", "data.seq_len=32", "tokenizer.vocab_size=400",
    "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.num_kv_heads=null",
    "model.intermediate_size=64", "train.batch_size=16", "train.log_every=2", "train.eval_every=10",
    "run.progress=false", "train.precision=fp32",  # the same numbers on every machine (auto: bf16 where native)
]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the tokenizer/token caches of the whole session out of the user's home."""
    cache = tmp_path_factory.mktemp("sleeptrain-cache")
    os.environ["SLEEPTRAIN_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield cache


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m sleeptrain ...` in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "sleeptrain", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


# A test is `slow` when it (or a fixture it asks for) trains end to end or starts another process: calls train(),
# the command line, a Trainer, a continual run, a subprocess. `pytest -m "not slow"` is the quick loop of
# development; `make test` (and CI) runs everything. Tests can also be marked by hand.
END_TO_END = re.compile(r"\b(train|run|run_cli|cli|run_trainer|run_continual|run_method|run_experiment|run_compare|"
                        r"run_sweep|search|table|main|isolated|compile)\(|\bsubprocess\.|\bPopen\(|\.train\(")


def _source(obj) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _trains_end_to_end(item) -> bool:
    """The test function's source, and that of every fixture of tests/ it asks for, calls something end to end."""
    sources = [_source(getattr(item, "function", None))]
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        for definition in (info.name2fixturedefs.get(name, ()) if info else ()):
            path = inspect.getsourcefile(definition.func) or ""
            if Path(path).resolve().parent == Path(__file__).resolve().parent:
                sources.append(_source(definition.func))
    return any(END_TO_END.search(source) for source in sources)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "slow" not in item.keywords and _trains_end_to_end(item):
            item.add_marker(pytest.mark.slow)


def save_tiny_llama(folder: Path) -> Path:
    """A 1-layer Llama with its own 300-token BPE, saved as a model folder (for evaluation tests)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from sleeptrain.data.tokenizer import train_bpe

    tokenizer = train_bpe(["the dog runs .", "a cat sleeps .", "the birds sing ."] * 50, vocab_size=300)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
