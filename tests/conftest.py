"""Shared fixtures. Tests that need ../shared/data are marked `shared` and skip when it is absent."""

from __future__ import annotations

import inspect
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

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


# The end-to-end `sleeptrain compare` that test_compare, test_compare_tuning and test_curves check, each its own part
# of it (run once per session: each run is a process, most of its seconds importing transformers). A floor on its
# natural length and a sleep arm with end ops, both tuned on one grid, 2 seeds at each arm's choice, two word
# milestones; killed after its first tuning run, resumed, then run once more (nothing left to do).
COMPARE_COMMON = [w for w in TINY_RUN if not w.startswith("train.eval_every")] + ["train.eval_every=8",
                                                                                  "run.plot=false"]
COMPARE_ARMS = ["single_pass", "nap=schedule=sleep,schedule.n_cycles=3,sleep.ops=[replay,downscale]"]
COMPARE_TUNE = ["tune.train.lr=[0.0005,0.01]", "tune.seeds=[0]"]


@pytest.fixture(scope="session")
def compare_experiment(tmp_path_factory) -> SimpleNamespace:
    exp_dir = tmp_path_factory.mktemp("compare") / "exp"
    words = [*COMPARE_ARMS, *COMPARE_COMMON, *COMPARE_TUNE, "checkpoint.words=[5000,10000]", "seeds=2",
             "budget.natural=single_pass", f"dir={exp_dir}"]   # 2 seeds: plumbing, not power
    first = exp_dir / "tuning" / "single_pass" / "t00" / "seed0" / "summary.json"
    proc = subprocess.Popen([sys.executable, "-m", "sleeptrain", "compare", *words], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 300
    while not first.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "the first tuning run did not finish in 300 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the compare and the training it had started
    proc.wait()
    first_mtime = first.stat().st_mtime
    resumed = run_cli("compare", *words, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    milestone = exp_dir / "runs" / "nap" / "seed1" / "chck_5K" / "eval" / "milestone.json"
    milestone_mtime = milestone.stat().st_mtime
    again = run_cli("compare", *words, timeout=600)
    return SimpleNamespace(dir=exp_dir, words=words, first=first, first_mtime=first_mtime, resumed=resumed,
                           again=again, milestone=milestone, milestone_mtime=milestone_mtime)


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
