"""tools/forgetter_study.py (issue 37 item 3): selection on dev, verdict on test, committed records a fresh clone
continues from — with the training replaced by fabricated run folders (the runs themselves are `sleeptrain train`)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# run -> (dev loss, test loss) per seed. Dev prefers 400 steps, test would prefer 650: selection must follow dev.
LOSSES = {"normal-250": [(5.10, 5.20), (5.12, 5.21), (5.11, 5.22)],
          "normal-400": [(5.00, 5.15), (5.01, 5.16), (5.02, 5.14)],
          "normal-650": [(5.05, 5.05), (5.06, 5.06), (5.04, 5.04)],
          "forgetter": [(5.03, 5.10), (5.04, 5.12), (5.02, 5.11)]}


def _tool():
    spec = importlib.util.spec_from_file_location("forgetter_study", REPO / "tools" / "forgetter_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_train(calls: list):
    def cli(*args, log):
        calls.append(args)
        run_dir = Path(next(a for a in args if a.startswith("run.dir=")).split("=", 1)[1])
        name, seed = run_dir.name.rsplit("-s", 1)
        dev, test = LOSSES[name][int(seed)]
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps({"final_val_loss": dev, "final_test_loss": test,
                                                          "tokens": 1000, "steps": 10}))
        events = [{"event": "start", "corpus": {"train": 1}, "train_tokens": 113_000, "parameters": 6,
                   "non_embedding_parameters": 4},
                  {"event": "eval", "step": 0, "tokens": 0, "val_loss": 8.0},
                  {"event": "eval", "step": 10, "tokens": 1000, "val_loss": dev}]
        if name == "forgetter":
            events += [{"event": "epoch_start"}, {"event": "controller", "mode": "light", "val_loss": dev}]
        (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
        (run_dir / "config.yaml").write_text("schedule: {name: forgetter}\n")
    return cli


def test_selection_reads_dev_the_verdict_reads_test_and_the_records_continue_the_study(tmp_path, monkeypatch):
    tool, calls = _tool(), []
    monkeypatch.setattr(tool, "cli", _fake_train(calls))
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"train_tokens_on_tape": 56_763, "comparison": {
        "forgetter_minus_best_normal": {"mean_diff": 0.0359}}}))
    argv = ["forgetter_study.py", "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
            "--normal-steps", "250,400,650", "--forgetter-steps", "240", "--seeds", "3", "--beside", str(earlier),
            "--link-back", "data=babylm", "train.precision=fp32"]
    monkeypatch.setattr(sys, "argv", argv)
    assert tool.main() == 0
    assert len(calls) == 12
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["normal"]["best_steps"] == 400  # dev's choice, though 650 has the lower test loss
    assert summary["normal"]["best_on_edge"] is False
    verdict = summary["verdict_test"]
    assert verdict["n"] == 3 and verdict["mean_diff"] == pytest.approx((5.10 + 5.12 + 5.11 - 5.15 - 5.16 - 5.14) / 3)
    assert summary["selection_split_dev"]["mean_diff"] == pytest.approx((5.03 + 5.04 + 5.02 - 5.00 - 5.01 - 5.02) / 3)
    report = (tmp_path / "results" / "report.md").read_text()
    assert "| test (verdict) | 3 |" in report and "56,763 training tokens" in report and "113,000 tokens" in report
    assert "on dev (that study had no held-out split)): FORGETTER minus best normal +0.0359; here (113,000 tokens) on " \
           "the same split +0.0200, on test (the verdict) -0.0400." in report
    assert len(list((tmp_path / "results" / "records").glob("*.json"))) == 12
    linked = json.loads(earlier.read_text())
    assert linked["comparison"]["forgetter_minus_best_normal"]["mean_diff"] == 0.0359  # the earlier study kept
    entry = linked["at_more_data"][str(tmp_path / "results")]
    assert entry["train_tokens_on_tape"] == 113_000 and entry["best_steps"] == 400
    assert entry["verdict_test"] == verdict and entry["selection_split_dev"] == summary["selection_split_dev"]

    shutil.rmtree(tmp_path / "runs")  # a fresh clone: only the committed records
    calls.clear()
    assert tool.main() == 0
    assert calls == [] and (tmp_path / "results" / "report.md").read_text() == report
    assert list(json.loads(earlier.read_text())["at_more_data"]) == [str(tmp_path / "results")]  # replaced, not added


def test_too_small_a_study_is_refused(monkeypatch, tmp_path, capsys):
    tool = _tool()
    monkeypatch.setattr(sys, "argv", ["forgetter_study.py", "--out", str(tmp_path), "--results", str(tmp_path),
                                      "--normal-steps", "250,400", "--forgetter-steps", "240"])
    assert tool.main() == 2
    assert ">= 3 lengths" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["forgetter_study.py", "--out", str(tmp_path), "--results", str(tmp_path),
                                      "--normal-steps", "250,400,650", "--forgetter-steps", "240", "--link-back",
                                      "train.precision=fp32"])
    assert tool.main() == 2
    assert "--link-back needs --beside" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", sys.argv[:-2])  # no --link-back, no precision
    assert tool.main() == 2
    assert "train.precision: pin it" in capsys.readouterr().err
