"""`train.eval_windows`: the fixed dev split, or fresh random dev windows per evaluation (FORGETTER's validation)."""

import numpy as np
import pytest

from conftest import TINY_RUN
from sleeptrain.data.samples import PackedBlocks
from sleeptrain.data.token_store import TokenStore
from sleeptrain.errors import ConfigError
from sleeptrain.lm.evaluator import Evaluator
from sleeptrain.lm.metrics_log import read_metrics
from sleeptrain.lm.train import train
from sleeptrain.presets import load_config


def evaluator(*overrides):
    cfg = load_config(["train.eval_max_batches=3", *overrides]).config
    store = TokenStore(np.arange(5000, dtype=np.uint16), np.array([0, 5000]), {"all": (0, 1)})
    return Evaluator(cfg, None, None, PackedBlocks(store, 50, 0), batch_size=4, log=lambda r: None)


def starts(samples):
    return samples.get(range(len(samples)))[0][:, 0].tolist()


def test_split_scores_the_same_blocks_every_time():
    ev = evaluator()
    assert ev.samples_at(10) is ev.dev_samples and ev.samples_at(20) is ev.dev_samples


def test_random_windows_are_fresh_per_evaluation_and_reproducible():
    ev = evaluator("train.eval_windows=random")
    a, b = ev.samples_at(100), ev.samples_at(200)
    assert len(a) == 3 * 4 and a.seq_len == 50
    assert starts(a) != starts(b)                                    # a new draw at every evaluation
    assert starts(a) == starts(evaluator("train.eval_windows=random").samples_at(100))  # same (seed, step)
    assert starts(a) != starts(evaluator("train.eval_windows=random", "seed=1").samples_at(100))
    ids = a.get(range(len(a)))[0]
    assert (ids[:, 1:] - ids[:, :-1] == 1).all()                     # whole windows of the tape, no padding
    assert not all(s % 50 == 0 for s in starts(a))                   # not the block grid


def test_random_windows_need_a_batch_count():
    with pytest.raises(ConfigError, match="train.eval_windows: random needs train.eval_max_batches"):
        load_config(["train.eval_windows=random", "train.eval_max_batches=null"])
    with pytest.raises(ConfigError, match="train.eval_windows"):
        load_config(["train.eval_windows=sometimes"])


def test_forgetter_presets_validate_on_random_windows_as_the_authors_code():
    for preset, batches in (("forgetter", 6000), ("forgetter_100m", 6000), ("forgetter_normal", 5000)):
        tc = load_config([f"schedule={preset}"]).config.train
        assert (tc.eval_windows, tc.eval_max_batches, tc.eval_every) == ("random", batches, 0)


def test_a_run_with_random_dev_windows_logs_each_epochs_loss(tmp_path):
    cfg = load_config([*TINY_RUN, f"run.dir={tmp_path / 'r'}", "run.plot=false", "eval.final=false",
                       "schedule=forgetter", "schedule.steps_per_epoch=6", "schedule.epochs=2",
                       "schedule.controller=true", "train.eval_max_batches=2", "train.eval_every=0"]).config
    train(cfg)
    evals = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r["event"] == "eval"]
    assert [e["step"] for e in evals] == [0, 6, 12, 12]  # start, the controller at each epoch end, the final one
    assert all(e["val_tokens"] == 2 * 16 * 31 for e in evals)  # 2 batches of 16 windows, 31 predicted tokens each
