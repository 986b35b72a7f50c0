"""Exact resume: runs killed with SIGKILL (in wake, mid-sleep) or stopped with SIGINT end bit-identical to an
uninterrupted run; changed configs are refused; finished runs say so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_RUN, run_cli
from sleeptrain.lm.checkpoint import checkpoint_dirs, latest_checkpoint
from sleeptrain.lm.metrics_log import read_metrics

# A sleep schedule touching every kind of state: dropout (torch RNG), loss-weighted replay (buffer RNG, scores),
# re-packed contexts, optimizer reset (light sleep) before replay and downscaling (importance) after it.
SLEEP_RUN = [*TINY_RUN, "schedule=sleep", "schedule.n_cycles=3", "schedule.sleep_wake_ratio=1.0",
             "sleep.ops=[optimizer_reset,replay,downscale]", "model.dropout=0.1", "train.log_every=3",
             "train.eval_every=25", "checkpoint.every=1", "checkpoint.keep=4", "run.plot=false",
             "eval.final=false"]
MASKED_RUN = [*SLEEP_RUN, "model=roberta-tiny", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
              "model.intermediate_size=64", "schedule=forgetter", "schedule.n_cycles=1", "schedule.steps_per_epoch=12",
              "schedule.epochs=4", "schedule.controller=true", "schedule.criteria=0.0", "sleep.ops=[optimizer_reset]",
              "train.eval_max_batches=4"]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sleeptrain", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def newest_step(run_dir: Path) -> int:
    ckpt = latest_checkpoint(run_dir)
    return json.loads((ckpt / "trainer_state.json").read_text())["step"] if ckpt else -1


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while newest_step(run_dir) < step:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before step {step}: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"no checkpoint at step {step} after {timeout} s")
        time.sleep(0.002)


def stages_of(run_dir: Path) -> list[list]:
    return next(r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "start")["stages"]


def phase_of_cursor(run_dir: Path, ckpt: Path) -> tuple[str, int]:
    state = json.loads((ckpt / "trainer_state.json").read_text())
    stage_index, offset, _ = state["cursor"]
    phase, _, _, steps = stages_of(run_dir)[min(stage_index, len(stages_of(run_dir)) - 1)]
    return phase, offset


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{name} differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs (same configs) whose final weights every resumed run must equal bit for bit."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for name, args in (("sleep", SLEEP_RUN), ("masked", MASKED_RUN)):
        result = run_cli("train", *args, f"run.dir={root / name}")
        assert result.returncode == 0, result.stderr[-3000:]
        out[name] = root / name
    return out


def sleep_step(run_dir: Path, cycle: int, into: int) -> int:
    """A step `into` steps inside the sleep of `cycle`."""
    stage = [s for s in stages_of(run_dir) if s[0] == "sleep" and s[1] == cycle][0]
    assert stage[3] > into + 4, stage
    return stage[2] + into


@pytest.mark.parametrize("where", ["wake", "sleep"])
def test_sigkill_then_resume_is_bit_identical(reference, tmp_path, where):
    run_dir = tmp_path / "run"
    target = 7 if where == "wake" else sleep_step(reference["sleep"], cycle=1, into=3)
    proc = start([*SLEEP_RUN, f"run.dir={run_dir}"])
    wait_for_step(proc, run_dir, target)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(run_dir)
    phase, offset = phase_of_cursor(run_dir, ckpt)
    assert phase == where and offset > 0, (phase, offset, ckpt)  # killed inside the phase, not at its edge
    assert not (run_dir / "final").exists()

    changed = run_cli("train", f"resume={run_dir}", "train.lr=0.5")
    assert changed.returncode == 2 and "train.lr" in changed.stderr and len(changed.stderr.strip().splitlines()) == 1

    if where == "wake":  # a checkpoint from before the elapsed time was kept: the run's wall time is unknown
        state = json.loads((ckpt / "trainer_state.json").read_text())
        del state["seconds"]
        (ckpt / "trainer_state.json").write_text(json.dumps(state))
    resumed = run_cli("train", f"resume={run_dir}", "run.progress=true", "resume.allow_changes=[run.progress]")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(reference["sleep"] / "final", run_dir / "final")
    assert json.loads((run_dir / "summary.json").read_text())["seconds_complete"] is (where == "sleep")
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["event"] for r in records].count("resume") == 1
    steps = [r["step"] for r in records if r["event"] == "train"]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # the dead run's tail was moved aside
    assert steps == [r["step"] for r in read_metrics(reference["sleep"] / "metrics.jsonl") if r["event"] == "train"]


def test_masked_lm_with_controller_killed_mid_run_resumes_exactly(reference, tmp_path):
    run_dir = tmp_path / "run"
    proc = start([*MASKED_RUN, f"run.dir={run_dir}"])
    wait_for_step(proc, run_dir, 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    phase, offset = phase_of_cursor(run_dir, latest_checkpoint(run_dir))
    assert phase == "wake" and offset > 0  # inside a FORGETTER epoch (12 steps each)
    resumed = run_cli("train", f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(reference["masked"] / "final", run_dir / "final")


def test_sigint_writes_a_checkpoint_and_the_run_resumes_exactly(reference, tmp_path):
    run_dir = tmp_path / "run"
    args = [a for a in SLEEP_RUN if not a.startswith("checkpoint.every")] + ["checkpoint.every=0"]
    proc = start([*args, f"run.dir={run_dir}"])
    deadline = time.time() + 240
    while not any(r.get("event") == "train" and r["step"] >= 9 for r in _safe_metrics(run_dir)):
        assert proc.poll() is None and time.time() < deadline, "run ended or stalled before step 9"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume=" in err and len(err.strip().splitlines()) == 1
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and newest_step(run_dir) >= 9
    before = json.loads((ckpt / "trainer_state.json").read_text())["seconds"]
    resumed = run_cli("train", f"resume={run_dir}", "checkpoint.every=1", "resume.allow_changes=[checkpoint]")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(reference["sleep"] / "final", run_dir / "final")
    summary = json.loads((run_dir / "summary.json").read_text())  # wall time adds the first session's
    assert before > 0 and summary["seconds"] == pytest.approx(before + summary["session_seconds"], abs=0.5)
    assert summary["seconds_complete"] is True


def _safe_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return out


def test_resuming_a_finished_run_says_so_and_is_not_an_error(reference):
    result = run_cli("train", f"resume={reference['sleep']}")
    assert result.returncode == 0 and "already finished" in result.stdout and "nothing to resume" in result.stdout
    assert result.stderr.strip() == ""


def test_resume_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, expected in [((f"resume={tmp_path / 'nope'}",), "not a sleeptrain run folder"),
                           ((f"resume={tmp_path / 'empty'}",), "not a sleeptrain run folder"),
                           ((f"resume={tmp_path}", "model=small"), "presets cannot be chosen")]:
        result = run_cli("train", *args)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_checkpoints_are_complete_and_rotated(reference):
    dirs = checkpoint_dirs(reference["sleep"])
    assert len(dirs) == 4
    for d in dirs:
        names = {p.name for p in d.iterdir()}
        assert {"model.safetensors", "config.json", "optimizer.pt", "trainer_state.pt", "trainer_state.json",
                "config.yaml", "tokenizer.json"} <= names
        torch.load(d / "trainer_state.pt", weights_only=True)  # plain tensors and values only
    assert not [p for p in (reference["sleep"] / "checkpoints").iterdir() if p.name.startswith(".")]
