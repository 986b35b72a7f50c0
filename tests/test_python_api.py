"""The Python API (issue 38 item 5): sleeptrain.load_config / train with keyword options, SleepSchedule in a loop
that is not sleeptrain's (replay, LR restarts, weight ops, exact resume), and model.init_from."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sleeptrain
from sleeptrain.errors import ConfigError
from conftest import TINY_RUN

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_loop_sleep.py"
OPTIONS = dict(total_steps=100, every_steps=20, batch_size=4, sleep={"ops": ["optimizer_reset", "replay", "downscale"]},
               replay={"strategy": "recency"}, warmup_steps=4)


def test_import_sleeptrain_loads_no_torch_and_resolves_the_api_on_first_use():
    code = ("import sys, sleeptrain; assert 'torch' not in sys.modules; "
            "assert callable(sleeptrain.train) and callable(sleeptrain.load_config); "
            "print(sleeptrain.SleepSchedule.__name__, sleeptrain.SleepCallback.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SleepSchedule", "SleepCallback"]
    assert {"train", "load_config", "SleepSchedule"} <= set(dir(sleeptrain))


def test_load_config_takes_words_sections_presets_and_keys():
    cfg = sleeptrain.load_config("train.batch_size=8", schedule="homeostasis", train={"lr": 3e-3, "max_steps": 7},
                                 sleep={"ops": ["replay", "downscale"], "shrink": 0.9}, seed=3)
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.max_steps, cfg.seed) == (8, 3e-3, 7, 3)
    assert cfg.schedule.name == "homeostasis" and cfg.sleep.ops == ["replay", "downscale"] and cfg.sleep.shrink == 0.9
    with pytest.raises(ConfigError, match="train.lr"):
        sleeptrain.load_config(train={"lr": "fast"})
    with pytest.raises(ConfigError, match="key=value"):
        sleeptrain.load_config("schedule")


def test_the_schedule_restarts_the_lr_at_each_sleep_and_replays_observed_samples():
    model = torch.nn.Linear(3, 2, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = sleeptrain.SleepSchedule("homeostasis", **OPTIONS).bind(model, optimizer)
    start, end = schedule.windows[0]
    assert (start, end) == (20, 25)  # sleep_wake_ratio 0.25 of the preset x 20 wake steps
    assert schedule.lr_factor(start) == 0.0 and schedule.lr_factor(start + 2) == 0.5  # a fresh warm-up
    observed = []
    for step in range(end + 1):
        if schedule.sleeping(step):
            batch = schedule.replay_batch()
            assert all(any(torch.equal(row, seen) for seen in observed) for row in batch)
        else:
            batch = schedule.observe(torch.randn(4, 3))
            observed += list(batch)
        model(batch).sum().backward()
        schedule.before_optimizer_step(model)
        optimizer.step()
        optimizer.zero_grad()
        assert schedule.after_step(step, optimizer)
    assert schedule.events[0]["step"] == 20 and "downscale" in schedule.events[0] and "optimizer_reset" in \
        schedule.events[0]
    plain = sleeptrain.SleepSchedule("homeostasis", **{**OPTIONS, "sleep": {"ops": ["replay", "downscale"]}})
    assert plain.lr_factor(start) > 0.0  # no op restarts the LR: one cosine over the run


def test_the_schedule_refuses_what_it_cannot_honour_in_one_line():
    for kwargs, needle in ((dict(OPTIONS, batch_size=None), "batch_size"),
                           (dict(OPTIONS, lr_shape="step"), "lr_shape"),
                           (dict(OPTIONS, schedule={"controller": True}), "controller"),
                           (dict(OPTIONS, train={"lr": 1.0}), "unexpected keyword")):
        with pytest.raises((ConfigError, TypeError), match=needle):
            sleeptrain.SleepSchedule("homeostasis", **kwargs)
    model = torch.nn.Linear(2, 2)
    schedule = sleeptrain.SleepSchedule("homeostasis", **OPTIONS)
    with pytest.raises(ConfigError, match="bind"):
        schedule.after_step(0, None)
    schedule.bind(model)
    with pytest.raises(ConfigError, match="expected step 0"):
        schedule.after_step(3, None)
    other = sleeptrain.SleepSchedule("homeostasis", **dict(OPTIONS, every_steps=30)).bind(model)
    with pytest.raises(ConfigError, match="every_steps"):
        other.load_state_dict(schedule.state_dict())
    weighted = sleeptrain.SleepSchedule("homeostasis", **dict(OPTIONS, replay={"strategy": "weighted"})).bind(model)
    for step in range(20):
        weighted.observe(torch.randn(4, 2))
        with pytest.raises(ConfigError, match="losses=") if step == 19 else _nothing():
            weighted.after_step(step, torch.optim.SGD(model.parameters(), lr=0.1))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.slow
def test_the_example_loop_resumes_bit_exactly_from_inside_a_sleep(tmp_path):
    def run(*extra):
        done = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "150", *extra], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        return done

    full = run("--out", "full.pt")
    assert full.returncode == 0, full.stderr
    assert "sleeps: [(60, 75), (135, 150)]" in full.stdout
    stopped = run("--out", "resumed.pt", "--stop-at", "70")  # mid-sleep: replay buffer and read position saved
    assert "stopped at step 70" in stopped.stderr
    resumed = run("--out", "resumed.pt", "--resume", "ckpt.pt")
    assert resumed.returncode == 0, resumed.stderr
    a, b = torch.load(tmp_path / "full.pt"), torch.load(tmp_path / "resumed.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full.stdout == resumed.stdout
    assert len(EXAMPLE.read_text().split("\n\n", 1)[1].splitlines()) <= 60  # a short example, imports included


@pytest.mark.slow
def test_train_through_the_api_and_continue_a_saved_model_with_init_from(tmp_path):
    first = sleeptrain.train(*TINY_RUN, schedule="single_pass", train={"max_steps": 20}, run={"dir": str(tmp_path / "a")})
    assert first.final_dir.is_dir() and first.steps == 20
    again = sleeptrain.train(*TINY_RUN, schedule="single_pass", train={"max_steps": 4}, run={"dir": str(tmp_path / "b")},
                             model={"init_from": str(first.final_dir)})
    # the first validation loss (before any step) is the saved model's loss on the same dev batches
    assert again.first_val_loss == pytest.approx(first.final_val_loss, abs=1e-6)
    config = (again.run_dir / "config.yaml").read_text()
    assert f"init_from: {first.final_dir}" in config and f"path: {first.final_dir}" in config  # its tokenizer
    with pytest.raises(ConfigError, match="model.init_from.*not a model folder"):
        sleeptrain.load_config(model={"init_from": str(tmp_path)})
    with pytest.raises(ConfigError, match="model.arch=llama"):
        sleeptrain.train(*TINY_RUN, "model=gpt2-tiny", train={"max_steps": 2}, run={"dir": str(tmp_path / "c")},
                         model={"init_from": str(first.final_dir)})
    assert not (tmp_path / "c").exists()  # refused before anything was written
    summary = json.loads((again.run_dir / "summary.json").read_text())
    assert summary["steps"] == 4
