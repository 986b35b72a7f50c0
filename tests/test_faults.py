"""Faults: NaN losses, a full disk, and a table of malformed configs, data and model folders. Each user-caused
error is exit code 2 with one line naming the field or file, and leaves no corrupt run folder behind."""

from __future__ import annotations

import errno
import gzip
import json

import pytest
import torch
from safetensors.torch import load_file

import sleeptrain.lm.checkpoint as checkpoint_module
import sleeptrain.lm.loop as loop_module
import sleeptrain.lm.train as train_module
from conftest import TINY_RUN
from sleeptrain.lm.checkpoint import CheckpointWriteError, checkpoint_dirs, latest_checkpoint
from sleeptrain.cli import main
from sleeptrain.lm.metrics_log import read_metrics
from sleeptrain.presets import load_config
from sleeptrain.lm.guards import TrainingDiverged
from sleeptrain.lm.train import train

FAULT_RUN = [*TINY_RUN, "schedule=single_pass", "train.max_steps=24", "train.log_every=4", "checkpoint.every=4",
             "checkpoint.keep=10", "run.plot=false", "eval.final=false"]


def nan_from_call(monkeypatch, bad_calls):
    """Make the training loss NaN on the given (0-based) forward calls of the loop."""
    real = loop_module.forward_losses
    calls = {"n": 0}

    def fake(*args, **kwargs):
        loss, token_loss, counted = real(*args, **kwargs)
        n = calls["n"]
        calls["n"] += 1
        nan = float("nan") if bad_calls(n) else 1.0
        return loss * nan, token_loss * nan, counted

    monkeypatch.setattr(loop_module, "forward_losses", fake)


def test_nan_loss_stops_and_the_newest_checkpoint_is_the_last_good_one(tmp_path, monkeypatch):
    nan_from_call(monkeypatch, lambda n: n >= 10)  # steps 0-9 fine; step 10 (the 11th) is NaN
    cfg = load_config([*FAULT_RUN, f"run.dir={tmp_path / 'run'}"]).config
    with pytest.raises(TrainingDiverged, match="last good checkpoint") as info:
        train(cfg)
    assert "\n" not in str(info.value)
    newest = latest_checkpoint(tmp_path / "run")
    assert json.loads((newest / "trainer_state.json").read_text())["step"] == 8
    assert all(torch.isfinite(t).all() for t in load_file(str(newest / "model.safetensors")).values())
    assert not (tmp_path / "run" / "final").exists()


def test_nan_loss_with_skip_batch_skips_the_step_and_goes_on(tmp_path, monkeypatch):
    nan_from_call(monkeypatch, lambda n: n in (5, 6))
    cfg = load_config([*FAULT_RUN, f"run.dir={tmp_path / 'run'}", "train.on_nan=skip_batch"]).config
    result = train(cfg)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "nan_skipped"] == [5, 6]
    assert result.steps == 24
    assert all(r["loss"] is not None for r in records if r["event"] == "train")
    assert all(torch.isfinite(t).all() for t in load_file(str(result.final_dir / "model.safetensors")).values())


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the second checkpoint's first file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    cfg = load_config([*FAULT_RUN, f"run.dir={tmp_path / 'run'}"]).config
    with pytest.raises(CheckpointWriteError, match="No space left on device.*step-00000004 is intact"):
        train(cfg)
    root = tmp_path / "run" / "checkpoints"
    assert [p.name for p in checkpoint_dirs(tmp_path / "run")] == ["step-00000004"]
    assert [p.name for p in root.iterdir()] == ["step-00000004"]  # no half-written folder left behind


# --- the bad-input table ---------------------------------------------------------------------------------------

def babylm(tmp_path, files: dict[str, bytes]):
    root = tmp_path / "corpus"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


GOOD_LINES = b"the dog sees the cat .\nthe cats see a dog .\n" * 200

BAD_CONFIGS = [
    (["train.lr_rate=0.1"], "train.lr_rate"),
    (["train.batch_size=abc"], "train.batch_size"),
    (["train.batch_size=-4"], "train.batch_size"),
    (["data.seq_len=-1"], "data.seq_len"),
    (["model.hidden_size=0"], "model.hidden_size"),
    (["replay.ratio=1.5"], "replay.ratio"),
    (["schedule=sleep", "schedule.n_cycles=100000"], "schedule.n_cycles"),
    (["model=huge"], "model: unknown preset"),
    (["schedule=nap"], "schedule: unknown preset"),
    (["train.on_nan=ignore"], "train.on_nan"),
    (["checkpoint.keep=0"], "checkpoint.keep"),
    (["train.micro_batch_size=5"], "train.micro_batch_size"),
    (["sleep.ops=[replay,replay]"], "sleep.ops"),
    (["train.precision=fp16", "train.device=cpu"], "train.precision"),
    (["notakey"], "expected group=preset or key=value"),
    (["data.path=/tmp"], "data.path: '/tmp' would be ignored: data.source is generated"),
    (["train.lr=nan"], "train.lr: must be a finite number, got nan"),
    (["train.lr=inf"], "train.lr: must be a finite number, got inf"),
    (["train.weight_decay=-inf"], "train.weight_decay: must be a finite number"),
]

BAD_DATA = [
    ("missing folder", None, "data.path"),
    ("empty files", {"train/a.train": b"", "dev/a.dev": b""}, "empty"),
    ("non-UTF-8 bytes", {"train/a.train": GOOD_LINES + b"caf\xe9 \xff\n", "dev/a.dev": GOOD_LINES}, "a.train: line 401"),
    ("one enormous line", {"train/a.train": b"word " * 300_000, "dev/a.dev": GOOD_LINES}, "data.max_line_chars"),
    ("smaller than one block", {"train/a.train": b"hi .\n", "dev/a.dev": b"hi .\n"}, "data.seq_len"),
    ("no train folder", {"dev/a.dev": GOOD_LINES}, "no training files"),
]


def run_main(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


def assert_one_line(code: int, err: str, expected: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sleeptrain"), err
    assert expected in lines[0], err


@pytest.mark.parametrize("args,expected", BAD_CONFIGS, ids=[" ".join(a) for a, _ in BAD_CONFIGS])
def test_bad_config(tmp_path, capsys, args, expected):
    run_dir = tmp_path / "run"
    code, err = run_main(capsys, "train", *TINY_RUN, f"run.dir={run_dir}", *args)
    assert_one_line(code, err, expected)
    assert not run_dir.exists()


@pytest.mark.parametrize("name,files,expected", BAD_DATA, ids=[n for n, _, _ in BAD_DATA])
def test_bad_data(tmp_path, capsys, name, files, expected):
    root = babylm(tmp_path, files) if files is not None else tmp_path / "missing"
    run_dir = tmp_path / "run"
    code, err = run_main(capsys, "train", *TINY_RUN, "data=babylm", f"data.path={root}", "tokenizer.vocab_size=300",
                         f"data.seq_len={64 if 'block' in name else 32}", f"run.dir={run_dir}")
    assert_one_line(code, err, expected)
    assert not run_dir.exists()


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    cfg = load_config([*TINY_RUN, "schedule=single_pass", "train.max_steps=4", f"run.dir={root / 'run'}",
                       "run.plot=false", "eval.final=false", "checkpoint.every=0",
                       "checkpoint.phase_boundaries=false"]).config
    return train(cfg).final_dir


def broken_copy(good, tmp_path, change):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(good, folder)
    change(folder)
    return folder


BAD_MODELS = [
    ("missing folder", lambda f: __import__("shutil").rmtree(f), "MODEL_DIR"),
    ("no config.json", lambda f: (f / "config.json").unlink(), "no config.json"),
    ("config.json not JSON", lambda f: (f / "config.json").write_text("{not json"), "config.json"),
    ("unknown model_type", lambda f: (f / "config.json").write_text(json.dumps({"model_type": "nonsense"})),
     "config.json"),
    ("truncated weights", lambda f: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:1000]), "weights"),
    ("no weights", lambda f: (f / "model.safetensors").unlink(), "weights"),
    ("no tokenizer", lambda f: [p.unlink() for p in f.glob("*token*")], "tokenizer"),
]


@pytest.mark.parametrize("name,change,expected", BAD_MODELS, ids=[n for n, _, _ in BAD_MODELS])
def test_bad_model_folder(good_model, tmp_path, capsys, name, change, expected):
    folder = broken_copy(good_model, tmp_path, change)
    before = sorted(p.name for p in folder.iterdir()) if folder.exists() else None
    code, err = run_main(capsys, "eval", str(folder), "perplexity.enabled=false")
    assert_one_line(code, err, expected)
    after = sorted(p.name for p in folder.iterdir()) if folder.exists() else None
    assert before == after  # nothing written into a broken folder


def test_bad_minimal_pairs_file(good_model, tmp_path, capsys):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    with gzip.open(pairs / "broken.jsonl.gz", "wt") as fh:
        fh.write('{"sentence_good": "a"}\n')
    code, err = run_main(capsys, "eval", str(good_model), f"blimp.path={pairs}", "perplexity.enabled=false")
    assert_one_line(code, err, "broken.jsonl.gz")


def test_disk_full_anywhere_else_is_one_line(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "metrics.jsonl"))

    monkeypatch.setattr(train_module, "MetricsLog", full)
    code, err = run_main(capsys, "train", *TINY_RUN, f"run.dir={tmp_path / 'run'}", "train.max_steps=2")
    assert_one_line(code, err, "No space left on device")


def test_an_empty_checkpoint_file_is_one_line_naming_the_way_on(tmp_path, stopped_run):
    from conftest import run_cli

    run_dir = unfinished_run(tmp_path, stopped_run)
    newest = latest_checkpoint(run_dir)
    (newest / "trainer_state.pt").write_bytes(b"")
    result = run_cli("train", f"resume={run_dir}")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("sleeptrain")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "the file is empty" in errors[0] and f"mv {newest} {newest}.bad" in errors[0], errors[0]
    assert "continue from step-00000008" in errors[0]
    newest.rename(newest.parent / f"{newest.name}.bad")              # the suggested fix ...
    assert latest_checkpoint(run_dir).name < newest.name              # ... leaves the one before as the newest


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run that stopped after its checkpoints (no final model, no summary), trained once per module."""
    root = tmp_path_factory.mktemp("stopped")
    run_dir = root / "run"
    train(load_config([*FAULT_RUN, f"run.dir={run_dir}", "train.max_steps=12"]).config)
    (run_dir / "final").rename(root / "final")
    (run_dir / "summary.json").unlink()
    records = read_metrics(run_dir / "metrics.jsonl")
    keep = next(i for i, r in enumerate(records) if r["event"] == "end")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:keep]))
    return run_dir


def unfinished_run(tmp_path, source):
    """A fresh copy of `stopped_run` (tests change it), ready to resume."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    return run_dir


def test_run_lock_names_the_holder_and_dies_with_it(tmp_path):
    import os
    import subprocess
    import sys

    from sleeptrain.errors import ConfigError
    from sleeptrain.fsutil import RunLock

    held = RunLock(tmp_path).acquire()
    with pytest.raises(ConfigError, match=f"in use by another sleeptrain process \\(PID {os.getpid()}\\)"):
        RunLock(tmp_path).acquire()
    held.release()
    RunLock(tmp_path).acquire().release()
    # a holder killed with SIGKILL leaves the file but not the lock
    code = ("import sys, time; sys.path.insert(0, %r); from sleeptrain.fsutil import RunLock; "
            "held = RunLock(%r).acquire(); print('locked', flush=True); time.sleep(60)") % (
        str(checkpoint_module.__file__).rsplit("/sleeptrain/", 1)[0], str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match=f"PID {holder.pid}"):
        RunLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    assert (tmp_path / ".lock").exists()
    RunLock(tmp_path).acquire().release()


def test_two_resumes_at_once_exactly_one_runs(tmp_path, stopped_run):
    import subprocess
    import sys

    run_dir = unfinished_run(tmp_path, stopped_run)
    procs = [subprocess.Popen([sys.executable, "-m", "sleeptrain", "train", f"resume={run_dir}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 2], [0, 0]), outs  # the second either finds the run in use (2) or already finished (0)
    if codes == [0, 2]:
        loser = next(err for p, (_, err) in zip(procs, outs) if p.returncode == 2)
        assert "in use by another sleeptrain process" in loser, loser
    else:
        assert sum("already finished" in out for out, _ in outs) == 1, outs
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["event"] for r in records].count("end") == 1
    assert [r["event"] for r in records].count("resume") == 1
    steps = [r["step"] for r in records if r["event"] == "train"]
    assert len(steps) == len(set(steps))                              # every record once


def test_an_empty_source_file_beside_good_ones_is_named(tmp_path):
    from sleeptrain.data.corpus import read_babylm

    root = babylm(tmp_path, {"train/a.train": GOOD_LINES, "train/b.train": b"\n\n", "dev/a.dev": GOOD_LINES})
    corpus = read_babylm(root)
    assert "train/b.train holds no text lines: it adds nothing" in corpus.notes


def test_a_run_that_never_checkpointed_gets_the_same_advice_from_resume_and_start(tmp_path):
    from conftest import run_cli

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("seed: 0\n")
    (run_dir / "metrics.jsonl").write_text('{"event": "start"}\n')
    resumed = run_cli("train", f"resume={run_dir}")
    started = run_cli("train", *TINY_RUN, f"run.dir={run_dir}")
    for result in (resumed, started):
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"rm -r {run_dir}" in result.stderr, result.stderr
        assert "resume=" not in result.stderr                         # no advice that cannot work


def test_ctrl_c_during_the_final_evaluation_says_what_is_saved(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "final_evaluation", interrupted)
    run_dir = tmp_path / "run"
    code, err = run_main(capsys, "train", *FAULT_RUN, "train.max_steps=8", "eval.final=true", f"run.dir={run_dir}")
    assert code == 130, err
    lines = [line for line in err.strip().splitlines() if line.startswith("sleeptrain: error")]
    assert len(lines) == 1 and "during the final evaluation" in lines[0], err
    assert f"sleeptrain eval {run_dir / 'final'}" in lines[0]
    assert (run_dir / "final" / "model.safetensors").exists()


def test_resume_offers_allow_changes_only_where_it_can_work(tmp_path, stopped_run):
    from sleeptrain.errors import ConfigError
    from sleeptrain.lm.resume import plan_resume

    run_dir = unfinished_run(tmp_path, stopped_run)
    with pytest.raises(ConfigError, match=r"train.batch_size shapes the data, model or schedule .* cannot change"):
        plan_resume([f"resume={run_dir}", "train.batch_size=8"])
    with pytest.raises(ConfigError, match=r"allow them with resume.allow_changes=\[train.log_every\]"):
        plan_resume([f"resume={run_dir}", "train.log_every=2"])
    plan = plan_resume([f"resume={run_dir}", "train.log_every=2", "resume.allow_changes=[train.log_every]"])
    assert "train.log_every" in plan.changed


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 64 MiB tmpfs (needs root and mount rights; skipped with the reason otherwise)."""
    import subprocess

    mount = tmp_path / "fs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({(proc.stderr or 'mount failed').strip()[:80]})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)  # lazy: mmapped files may still be open


def test_a_really_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last(tmp_path, small_filesystem, capsys):
    import os
    import shutil

    args = [*FAULT_RUN, "train.max_steps=12"]
    reference = tmp_path / "reference"
    train(load_config([*args, f"run.dir={reference}"]).config)
    one = sum(f.stat().st_size for f in checkpoint_dirs(reference)[0].rglob("*") if f.is_file())
    run_dir = small_filesystem / "run"
    free = shutil.disk_usage(small_filesystem).free
    filler = small_filesystem / "filler"
    with open(filler, "wb") as fh:  # leave room for one checkpoint and the logs, not for two
        fh.truncate(0)
        fh.write(b"\0" * (free - one - one // 2))
        os.fsync(fh.fileno())
    code, err = run_main(capsys, "train", *args, f"run.dir={run_dir}")
    lines = [line for line in err.strip().splitlines() if line.startswith("sleeptrain: error")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "No space left on device" in lines[0] and "step-00000004 is intact" in lines[0], lines[0]
    assert f"sleeptrain train resume={run_dir}" in lines[0]
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step-00000004"]  # no half-written folder
    filler.unlink()
    capsys.readouterr()
    resumed = main(["train", f"resume={run_dir}"])
    assert resumed == 0 and (run_dir / "final" / "model.safetensors").exists()
