"""Issue 40: a validation split held out of training, every method tuned alike on it, and continual evaluation
(the stability gap: min-ACC and WC-ACC)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sleeptrain.continual.curve import worst_case
from sleeptrain.continual.data import Benchmark, Task
from sleeptrain.continual.runner import load_continual_config, run_continual
from sleeptrain.continual.validation import hold_out_validation
from sleeptrain.errors import ConfigError
from test_src import fake_mnist

FAST = ["benchmark=split_digits", "net.hidden=[32,32]", "sgd.epochs=1", "run.plot=true"]


def rows(x: torch.Tensor) -> set[tuple]:
    return {tuple(r) for r in x.numpy().round(6).tolist()}


def test_validation_images_are_never_trained_slept_on_or_tested(tmp_path):
    from sleeptrain.continual.data import split_digits, split_mnist

    bench = split_digits()
    held = hold_out_validation(bench, 5, seed=3)
    for before, task in zip(bench.tasks, held.tasks):
        assert len(task.y_val) == 10 and sorted(np.bincount(task.y_val.numpy())[task.classes]) == [5, 5]
        assert len(task.y_train) == len(before.y_train) - 10
        assert not rows(task.x_val) & rows(task.x_train) and not rows(task.x_val) & rows(task.seen)
        assert not rows(task.x_val) & rows(task.x_test) and torch.equal(task.x_test, before.x_test)
    assert torch.equal(hold_out_validation(bench, 5, seed=3).tasks[0].x_val, held.tasks[0].x_val)  # seeded
    assert not torch.equal(hold_out_validation(bench, 5, seed=4).tasks[0].x_val, held.tasks[0].x_val)
    # Split-MNIST trains on the first images in file order: validation comes from the unused rest, SGD's set stays
    mnist = split_mnist(fake_mnist(tmp_path / "m", n_train=400), train_per_task=20)
    kept = hold_out_validation(mnist, 3, seed=0).tasks[0]
    assert torch.equal(kept.x_train, mnist.tasks[0].x_train) and len(kept.seen) == len(mnist.tasks[0].seen) - 6
    assert not rows(kept.x_val) & rows(kept.seen)
    with pytest.raises(ConfigError, match="validation: 400 images per class leaves none"):
        hold_out_validation(bench, 400, seed=0)


def test_validation_and_tune_errors_are_one_line():
    with pytest.raises(ConfigError, match="tune: choices are made on a validation split"):
        load_continual_config([*FAST, "method=ewc", "tune=ewc_strength:[1,10]"])
    with pytest.raises(ConfigError, match=r"tune: 'ewc_strength'; write tune=KEY:\[v1,v2,...\]"):
        load_continual_config([*FAST, "validation=5", "tune=ewc_strength"])
    with pytest.raises(ConfigError, match="method sequential has no default grid"):
        load_continual_config([*FAST, "method=sequential", "validation=5", "tune=default"])
    with pytest.raises(ConfigError, match="validation: patches has one image per class"):
        load_continual_config(["benchmark=patches", "validation=1"])
    with pytest.raises(ConfigError, match=r"^ewc_strength: expected float, got 'x' \[tune=ewc_strength\]$"):
        load_continual_config([*FAST, "method=ewc", "validation=5", "tune=ewc_strength:[1,x]"])
    with pytest.raises(ConfigError, match=r"^src.betas: expected list\[float\], got 1 \[tune=src.betas\]$"):
        load_continual_config([*FAST, "method=src", "validation=5", "tune=src.betas:[1,2]"])
    with pytest.raises(ConfigError, match="tune: 'seed' is not a setting a grid may tune"):
        load_continual_config([*FAST, "method=ewc", "validation=5", "tune=seed:[1,2]"])
    cfg = load_continual_config([*FAST, "method=si", "validation=5", "tune=default"])
    assert cfg.tune == {"si_strength": [0.01, 0.1, 1.0, 10.0]}


def flipped_test_benchmark() -> Benchmark:
    """Two tasks whose validation images are labelled as their training images, and whose test images carry the
    other class's label: a net that learns scores high on validation and low on test."""
    rng = np.random.default_rng(0)
    tasks = []
    for t, classes in enumerate([[0, 1], [2, 3]]):
        centres = rng.uniform(0, 1, (2, 16)).astype(np.float32)

        def draw(n, labels):
            x = np.concatenate([centres[i] + 0.05 * rng.standard_normal((n, 16)) for i in range(2)])
            return torch.from_numpy(x.clip(0, 1).astype(np.float32)), torch.tensor(np.repeat(labels, n))
        x_tr, y_tr = draw(60, classes)
        x_val, y_val = draw(20, classes)
        x_te, y_te = draw(20, classes[::-1])  # flipped
        tasks.append(Task(f"t{t + 1}", classes, x_tr, y_tr, x_te, y_te, x_val=x_val, y_val=y_val))
    return Benchmark("split_digits", tasks, 16, 4, None)


def test_the_choice_follows_validation_when_test_disagrees(tmp_path, monkeypatch):
    import sleeptrain.continual.runner as runner

    bench = flipped_test_benchmark()
    monkeypatch.setattr(runner, "build_benchmark", lambda cfg, seed, overlap=None: bench)
    cfg = load_continual_config([*FAST, "method=sequential", "validation=5", "sgd.epochs=20", "sgd.batch_size=10",
                                 "tune=sgd.lr:[1e-6,0.3]", "tune_seeds=[7,8]", f"run.dir={tmp_path / 'r'}"])
    results, _ = run_continual(cfg)
    tuning = results["tuning"]
    by_lr = {t["values"]["sgd.lr"]: t["validation_accuracy"] for t in tuning["trials"]}
    assert by_lr[0.3] > 0.4 > by_lr[1e-6]                      # learning helps on validation ...
    assert tuning["choice"] == {"sgd.lr": 0.3} and results["config"]["sgd.lr"] == 0.3
    assert [len(t["per_seed"]) for t in tuning["trials"]] == [2, 2] and tuning["seeds"] == [7, 8]
    untrained = load_continual_config([*FAST, "method=sequential", "sgd.lr=1e-6", "sgd.epochs=20",
                                       "sgd.batch_size=10", f"run.dir={tmp_path / 'u'}"])
    assert results["average_accuracy"]["mean"] < run_continual(untrained)[0]["average_accuracy"]["mean"]  # ... not on test
    assert tuning["choice_on_edge"] == ["sgd.lr"]


def test_a_diverging_point_is_recorded_and_never_chosen(tmp_path):
    cfg = load_continual_config([*FAST, "method=ewc", "validation=5", "tune=ewc_strength:[1,1e12]",
                                 f"run.dir={tmp_path / 'r'}", "run.plot=false"])
    results, _ = run_continual(cfg)
    trials = results["tuning"]["trials"]
    assert trials[1]["validation_accuracy"] is None and "diverged" in trials[1]["note"]
    assert results["tuning"]["choice"] == {"ewc_strength": 1}


def test_min_acc_and_wc_acc_by_hand():
    # three tasks; points as run_method records them (accuracy on tasks 0..t)
    points = [
        {"iteration": 5, "task": 0, "kind": "train", "accuracy": [0.6]},
        {"iteration": 10, "task": 0, "kind": "after_train", "accuracy": [0.9]},
        {"iteration": 10, "task": 0, "kind": "after_sleep", "accuracy": [0.85]},
        {"iteration": 15, "task": 1, "kind": "train", "accuracy": [0.2, 0.5]},    # the gap opens
        {"iteration": 20, "task": 1, "kind": "after_train", "accuracy": [0.4, 0.95]},
        {"iteration": 20, "task": 1, "kind": "after_sleep", "accuracy": [0.7, 0.8]},
        {"iteration": 25, "task": 2, "kind": "train", "accuracy": [0.5, 0.3, 0.4]},
        {"iteration": 30, "task": 2, "kind": "after_train", "accuracy": [0.6, 0.6, 0.9]},
    ]
    got = worst_case(points, 3)
    assert got["min_by_task"] == [0.2, 0.3]                     # task 1: min after its training ended (incl. sleeps)
    assert got["min_acc"] == pytest.approx(0.25)
    assert got["wc_acc"] == pytest.approx(0.9 / 3 + (2 / 3) * 0.25)
    assert got["gap"] == pytest.approx([0.9 - 0.2, 0.95 - 0.3])
    assert worst_case(points[:2], 1)["min_acc"] is None


def test_continual_evaluation_records_the_curve_without_changing_the_training(tmp_path):
    base = [*FAST, "method=src", "src.iterations=200", "src.growth=50", "src.streams=16", "seeds=1"]
    plain, _ = run_continual(load_continual_config([*base, f"run.dir={tmp_path / 'a'}"]))
    watched, run_dir = run_continual(load_continual_config([*base, "eval_every=3", f"run.dir={tmp_path / 'b'}"]))
    assert watched["accuracy_matrix"]["mean"] == plain["accuracy_matrix"]["mean"]   # evaluation draws no randomness
    seed = watched["per_seed"][0]
    curve = seed["curve"]
    assert [p["kind"] for p in curve].count("after_sleep") == 5 and [p["kind"] for p in curve].count("after_train") == 5
    assert all(len(p["accuracy"]) == p["task"] + 1 for p in curve)
    assert all(p["iteration"] % 3 == 0 for p in curve if p["kind"] == "train")
    ends = [p for p in curve if p["kind"] == "after_sleep"]
    assert [p["accuracy"] for p in ends] == [row[:i + 1] for i, row in enumerate(plain["per_seed"][0]["accuracy_matrix"][1::2])]
    assert watched["min_acc"]["mean"] == seed["min_acc"] and 0 <= seed["wc_acc"] <= 1
    assert (run_dir / "continual_eval.png").stat().st_size > 0
    saved = json.loads((run_dir / "results.json").read_text())
    assert "min_acc" in saved and "curve" in saved["per_seed"][0]


def test_the_stability_gap_tool_tables_min_acc_and_wc_acc(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "tools" / "src_stability_gap.py"), "--benchmark", "split_digits",
                           "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--seeds", "2",
                           "--eval-every", "4", "--methods", "sequential,src", "net.hidden=[16,16]", "sgd.epochs=1",
                           "src.iterations=100", "src.growth=20", "src.streams=8"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads((tmp_path / "res" / "split_digits-gap.json").read_text())
    src = saved["methods"]["src"]
    assert len(src["per_seed"]["min_acc"]) == 2 and len(src["gap_by_task"]) == 4
    assert src["vs_sequential"]["min_acc"]["n"] == 2
    assert (tmp_path / "res" / "split_digits-gap.png").stat().st_size > 1000
    assert "| src |" in (tmp_path / "res" / "split_digits-gap.md").read_text()
