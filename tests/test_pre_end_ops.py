"""A run whose last stage ends with sleep ops that change the weights (a final shrink) is also scored just before
them: dev and test loss then, and the model of that moment in RUN_DIR/pre_end_ops, evaluated like final/; the
test-split loss of the final model is in every summary (issue 36)."""

from __future__ import annotations

import json

import torch

from conftest import TINY_RUN
from sleeptrain.lm.train import describe, train
from sleeptrain.presets import load_config


def test_a_run_ending_in_a_shrink_is_scored_before_and_after_it(tmp_path):
    cfg = load_config([*TINY_RUN, f"run.dir={tmp_path / 'run'}", "schedule=sleep", "schedule.n_cycles=2",
                       "sleep.ops=[replay,downscale]", "sleep.shrink=0.5", "sleep.protect_fraction=0",
                       "run.plot=false"]).config
    result = train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    pre = summary["pre_end_ops"]
    assert pre["step"] == summary["steps"] and pre["dir"] == str(tmp_path / "run" / "pre_end_ops")
    assert {"val_loss", "test_loss", "blimp_overall", "dev_ppl"} <= set(pre)
    assert pre["val_loss"] != summary["final_val_loss"]       # a x0.5 shrink with nothing after it shows
    assert summary["final_test_loss"] > 0 and pre["test_loss"] > 0
    folder = tmp_path / "run" / "pre_end_ops"
    assert json.loads((folder / "eval" / "results.json").read_text())["blimp"]["overall"] == pre["blimp_overall"]
    from safetensors.torch import load_file

    before, after = load_file(str(folder / "model.safetensors")), load_file(str(tmp_path / "run" / "final" /
                                                                                 "model.safetensors"))
    name = next(k for k in before if k.endswith("mlp.down_proj.weight"))
    assert torch.allclose(after[name], 0.5 * before[name])   # the shrink is the only change after the snapshot
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert events.index("pre_end_ops") < events.index("sleep_op", events.index("pre_end_ops")) < events.index("test")
    text = describe(result)
    assert "before end ops    : validation" in text and "test loss         :" in text


def test_a_run_without_end_ops_has_a_test_loss_and_no_pre_end_entry(tmp_path):
    cfg = load_config([*TINY_RUN, f"run.dir={tmp_path / 'run'}", "schedule=single_pass", "train.max_steps=12",
                       "run.plot=false", "eval.final=false"]).config
    train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "pre_end_ops" not in summary and summary["final_test_loss"] > 0
    assert not (tmp_path / "run" / "pre_end_ops").exists()
