"""Two CPU processes (gloo, launched like a user would with torchrun / accelerate launch) train a tiny sleep
schedule: wake samples are sharded disjointly, replay buffers agree across ranks, and the final weights match a
one-process run with the same global batch; a two-process checkpoint resumes in one process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_RUN, run_cli
from sleeptrain.lm.checkpoint import checkpoint_dirs
from sleeptrain.lm.metrics_log import read_metrics

MP_RUN = [*TINY_RUN, "schedule=sleep", "schedule.n_cycles=3", "schedule.sleep_wake_ratio=0.5",
          "sleep.ops=[replay,downscale]", "sleep.importance=fisher_per_sample",  # per-sample sums across ranks
          "train.log_samples=true", "run.plot=false", "eval.final=false", "checkpoint.every=5", "checkpoint.keep=50",
          "train.device=cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n: int, run_dir: Path, launcher: str = "torchrun") -> subprocess.CompletedProcess:
    port = str(free_port())
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port", port]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
               "--main_process_port", port]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*cmd, "-m", "sleeptrain", "train", *MP_RUN, f"run.dir={run_dir}"], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def sample_log(run_dir: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (run_dir / f"samples.rank{rank}.jsonl").read_text().splitlines()]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    one = run_cli("train", *MP_RUN, f"run.dir={root / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(2, root / "two")
    return root, two


def test_two_processes_shard_wake_samples_and_agree_on_buffers(runs):
    root, result = runs
    assert result.stdout.count("done:") == 1  # one summary, from process 0
    start = next(r for r in read_metrics(root / "two" / "metrics.jsonl") if r["event"] == "start")
    assert start["processes"] == 2
    logs = [sample_log(root / "two", r) for r in (0, 1)]
    one = sample_log(root / "one", 0)
    for cycle in range(3):
        seen = [[i for rec in log if rec["phase"] == "wake" and rec["cycle"] == cycle for i in rec["indices"]]
                for log in logs]
        assert not set(seen[0]) & set(seen[1])  # disjoint shards
        union = seen[0] + seen[1]
        assert len(union) == len(set(union))  # each sample once per wake phase
        fold = [i for rec in one if rec["phase"] == "wake" and rec["cycle"] == cycle for i in rec["indices"]]
        assert sorted(union) == sorted(fold)  # exactly the fold
        buffers = [[rec["indices"] for rec in log if rec["phase"] == "buffer" and rec["cycle"] == cycle]
                   for log in (*logs, one)]
        assert buffers[0] == buffers[1] == buffers[2] and buffers[0][0]


def test_two_processes_end_where_one_process_ends(runs):
    root, _ = runs
    a, b = weights(root / "one"), weights(root / "two")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_a_two_process_checkpoint_resumes_in_one_process(runs, tmp_path):
    root, _ = runs
    run_dir = tmp_path / "two"
    shutil.copytree(root / "two", run_dir)
    ckpts = checkpoint_dirs(run_dir)
    middle = ckpts[len(ckpts) // 2]
    for later in ckpts[len(ckpts) // 2 + 1:]:  # as if the two-process run had died just after `middle`
        shutil.rmtree(later)
    shutil.rmtree(run_dir / "final")
    (run_dir / "summary.json").unlink()
    assert json.loads((middle / "trainer_state.json").read_text())["processes"] == 2
    resumed = run_cli("train", f"resume={run_dir}")  # run.dir follows the moved folder
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = weights(root / "two"), weights(run_dir)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_accelerate_launch_runs_the_same_training(runs, tmp_path):
    root, _ = runs
    launch(2, tmp_path / "acc", launcher="accelerate")
    a, b = weights(root / "two"), weights(tmp_path / "acc")
    assert all(torch.equal(a[k], b[k]) for k in a)
