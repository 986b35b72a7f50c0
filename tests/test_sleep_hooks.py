"""The sleep extension point: an op registered from outside the package runs through a training run, a checkpoint
and a resume; config choice lists are the registries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_RUN
from sleeptrain.config import Config, EvalConfig, ReplayConfig, SleepConfig, TrainConfig
from sleeptrain.errors import ConfigError
from sleeptrain.evaluate.scoring import MLM_METHODS
from sleeptrain.lm.checkpoint import checkpoint_dirs
from sleeptrain.lm.lr_schedules import LR_SCHEDULES
from sleeptrain.lm.metrics_log import read_metrics
from sleeptrain.lm.train import train
from sleeptrain.presets import load_config
from sleeptrain.sleep import SleepHook, op_names, register_op, strategy_names, unregister_op
from sleeptrain.sleep.registry import check_config
from sleeptrain.lm.lr_schedules import lr_function
from sleeptrain.sleep.homeostasis import IMPORTANCE_KINDS, SCOPES


class Tally(SleepHook):
    """A toy op with state and an LR effect: counts wake steps and sleeps, shrinks the matrices a little at each
    sleep (so a resume that lost its state would train differently), restarts the LR cycle where it runs and halves
    the peak LR every cycle."""

    restarts_lr_cycle = True

    def __init__(self, cfg, model=None):
        super().__init__(cfg, model)
        self.wake_steps, self.sleeps = 0, 0
        self.norms = torch.zeros(0)

    @classmethod
    def peak_lr_factor(cls, cfg, cycle):
        return 0.5 ** cycle

    def on_wake_step(self, model):
        self.wake_steps += 1

    @torch.no_grad()
    def apply(self, ctx):
        self.sleeps += 1
        matrices = [p for p in ctx.unwrapped().parameters() if p.ndim == 2]
        for p in matrices:
            p.mul_(0.99)
        self.norms = torch.cat([self.norms, torch.stack([p.float().norm() for p in matrices]).norm().reshape(1)])
        return {"sleeps": self.sleeps, "wake_steps": self.wake_steps}

    def state_dict(self):
        return {"wake_steps": self.wake_steps, "sleeps": self.sleeps}, {"norms": self.norms.clone()}

    def load_state_dict(self, values, tensors):
        self.wake_steps, self.sleeps = values["wake_steps"], values["sleeps"]
        self.norms = tensors["norms"].clone()


@pytest.fixture
def tally():
    register_op("tally")(Tally)
    yield "tally"
    unregister_op("tally")


TALLY_RUN = [*TINY_RUN, "schedule=sleep", "schedule.n_cycles=3", "schedule.sleep_wake_ratio=0.5",
             "sleep.ops=[replay,tally]", "train.lr_schedule=linear", "train.warmup_steps=0", "train.min_lr_ratio=0.0",
             "checkpoint.every=1", "checkpoint.keep=1000", "run.plot=false", "eval.final=false", "train.log_every=1"]


def final_state(run_dir: Path) -> tuple[dict, dict]:
    last = checkpoint_dirs(run_dir)[-1]
    values = json.loads((last / "trainer_state.json").read_text())["sleep"]["tally"]
    tensors = torch.load(last / "trainer_state.pt", weights_only=True)["sleep"]["tally"]
    return values, tensors


def test_an_op_registered_outside_the_package_trains_checkpoints_and_resumes(tmp_path, tally):
    cfg = load_config([*TALLY_RUN, f"run.dir={tmp_path / 'full'}"]).config
    result = train(cfg)
    records = read_metrics(result.run_dir / "metrics.jsonl")
    start = next(r for r in records if r["event"] == "start")
    wake_steps = sum(steps for phase, _, _, steps in start["stages"] if phase == "wake")
    ops = [r for r in records if r["event"] == "sleep_op"]
    assert [r["op"] for r in ops] == ["tally"] * 3 and [r["sleeps"] for r in ops] == [1, 2, 3]
    assert ops[-1]["wake_steps"] == wake_steps  # on_wake_step ran once per wake step, never in sleep

    # its LR effect: a fresh cycle at every sleep end (it comes after replay), peaks halved each cycle
    train_lrs = {r["step"] - 1: r["lr"] for r in records if r["event"] == "train"}
    sleep_ends = [s[2] + s[3] for s in start["stages"] if s[0] == "sleep"][:-1]
    for cycle, step in enumerate(sleep_ends, start=1):
        assert train_lrs[step] == pytest.approx(cfg.train.lr * 0.5 ** cycle)
        assert train_lrs[step - 1] < 0.5 * train_lrs[step]  # the cycle before had decayed towards 0
    values, tensors = final_state(result.run_dir)
    assert values == {"wake_steps": wake_steps, "sleeps": 3} and tensors["norms"].shape == (3,)

    # resume from a checkpoint in the middle of the second wake, in a copy of the run folder
    stages = start["stages"]
    second_wake = [s for s in stages if s[0] == "wake"][1]
    resume_step = second_wake[2] + second_wake[3] // 2
    copy = tmp_path / "resumed"
    shutil.copytree(result.run_dir, copy, ignore=shutil.ignore_patterns("final", "summary.json"))
    for ckpt in checkpoint_dirs(copy):
        if int(ckpt.name.split("-")[1]) > resume_step:
            shutil.rmtree(ckpt)
    resumed_ckpt = checkpoint_dirs(copy)[-1]
    saved = json.loads((resumed_ckpt / "trainer_state.json").read_text())["sleep"]["tally"]
    assert saved == {"wake_steps": resume_step - stages[1][3], "sleeps": 1}
    cfg_resumed = load_config([*TALLY_RUN, f"run.dir={copy}"]).config
    train(cfg_resumed, resume_from=resumed_ckpt)
    full_w = load_file(str(result.run_dir / "final" / "model.safetensors"))
    resumed_w = load_file(str(copy / "final" / "model.safetensors"))
    assert all(torch.equal(full_w[k], resumed_w[k]) for k in full_w)
    values_resumed, tensors_resumed = final_state(copy)
    assert values_resumed == values and torch.equal(tensors_resumed["norms"], tensors["norms"])


def test_lr_function_reads_the_registered_lr_effects(tally):
    from sleeptrain.lm.phases import build_plan

    plan = build_plan(100, 10, seed=0, n_cycles=2, sleep=True, replay_ratio=0.0)  # 5 + 5 wake steps, 0-step sleeps
    cfg = Config(sleep=SleepConfig(ops=["tally"]))
    cfg.train.lr, cfg.train.lr_schedule, cfg.train.warmup_steps, cfg.train.min_lr_ratio = 1.0, "linear", 0, 0.0
    lr = lr_function(plan, cfg)
    assert [lr(s) for s in range(10)] == pytest.approx([1, 0.75, 0.5, 0.25, 0, 0.5, 0.375, 0.25, 0.125, 0])


def test_registration_errors_are_clear(tally):
    with pytest.raises(ValueError, match="already registered"):
        register_op("tally")(Tally)
    with pytest.raises(ValueError, match="not 'replay'"):
        register_op("replay")(Tally)
    assert "tally" in op_names() and SleepConfig(ops=["replay", "tally"]).ops == ["replay", "tally"]


def allowed_in_message(exc: ConfigError) -> list[str]:
    return str(exc).split("choose one of ", 1)[1].split(", ")


@pytest.mark.parametrize("make, registry", [
    (lambda v: check_config(Config(sleep=SleepConfig(ops=[v]))), op_names),
    (lambda v: check_config(Config(replay=ReplayConfig(strategy=v))), strategy_names),
    (lambda v: EvalConfig(method=v), lambda: MLM_METHODS),
    (lambda v: SleepConfig(importance=v), lambda: IMPORTANCE_KINDS),
    (lambda v: SleepConfig(scope=v), lambda: SCOPES),
    (lambda v: TrainConfig(lr_schedule=v), lambda: LR_SCHEDULES),
])
def test_config_choice_lists_are_the_registries(make, registry):
    for name in registry():
        make(name)  # every registered name validates
    with pytest.raises(ConfigError) as info:
        make("no_such_choice")
    assert allowed_in_message(info.value) == list(registry())


def with_ops(*ops: str) -> Config:
    return Config(sleep=SleepConfig(ops=list(ops)))


def test_unregistered_op_is_refused_and_registration_makes_it_valid(tmp_path):
    with pytest.raises(ConfigError, match="sleep.ops: 'late_op' is not allowed"):
        check_config(with_ops("late_op"))
    built = with_ops("late_op")  # a Config built in Python: train() refuses it before it reads data or writes
    built.run.dir = str(tmp_path / "run")
    with pytest.raises(ConfigError, match="sleep.ops: 'late_op' is not allowed"):
        train(built)
    assert not (tmp_path / "run").exists()

    @register_op("late_op")
    class LateOp(SleepHook):
        pass

    try:
        assert allowed_in_message(pytest.raises(ConfigError, check_config, with_ops("nope")).value)[-1] == "late_op"
        check_config(with_ops("late_op"))
    finally:
        unregister_op("late_op")


def oldest_first(k, scores, ages, rng, cfg):
    """A toy replay strategy (docs/SCHEDULES.md, "Adding a replay strategy"): the k candidates unseen longest."""
    import numpy as np

    return np.argsort(-ages, kind="stable")[:k]


def test_a_strategy_registered_from_outside_runs_through_a_training_run(tmp_path):
    from sleeptrain.sleep import register_strategy, unregister_strategy

    register_strategy("oldest_first")(oldest_first)
    try:
        cfg = load_config([*TINY_RUN, "schedule=sleep", "schedule.n_cycles=2", "replay.strategy=oldest_first",
                           "train.log_samples=true", "eval.final=false", "run.plot=false",
                           f"run.dir={tmp_path / 'run'}"]).config
        train(cfg)
    finally:
        unregister_strategy("oldest_first")
    starts = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "sleep_start"]
    assert len(starts) == 2 and all(r["buffer_size"] > 0 for r in starts)
    logged = [json.loads(line) for line in (tmp_path / "run" / "samples.rank0.jsonl").read_text().splitlines()]
    buffer = next(r for r in logged if r["phase"] == "buffer")["indices"]
    # before the first sleep every candidate was last seen once, in wake 1: the oldest are those of its first steps
    earliest: set[int] = set()
    for record in (r for r in logged if r["phase"] == "wake"):
        if len(earliest) >= len(buffer):
            break
        earliest.update(record["indices"])
    assert set(buffer) <= earliest and len(earliest) < starts[0]["step"] * 16
    with pytest.raises(ConfigError, match="replay.strategy: 'oldest_first' is not allowed"):
        check_config(cfg)  # unregistered again


def test_continual_methods_are_the_runner_methods():
    from sleeptrain.continual.config import ContinualConfig
    from sleeptrain.continual.methods import METHODS

    with pytest.raises(ConfigError) as info:
        ContinualConfig(method="no_such_method")
    assert allowed_in_message(info.value) == list(METHODS)


PLUGIN = '''
from sleeptrain.sleep import SleepHook, register_op


@register_op("halve_lr")
class HalveLR(SleepHook):
    restarts_lr_cycle = True

    @classmethod
    def peak_lr_factor(cls, cfg, cycle):
        return 0.5 ** cycle

    def apply(self, ctx):
        return {"peak_next": self.peak_lr_factor(ctx.cfg, ctx.cycle + 1)}
'''


def cli(args, env_extra, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_extra}
    return subprocess.run([sys.executable, "-m", "sleeptrain", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def test_the_command_line_loads_plugin_ops_from_sleeptrain_plugins(tmp_path):
    (tmp_path / "my_sleep_ops.py").write_text(PLUGIN)
    env = {"SLEEPTRAIN_PLUGINS": "my_sleep_ops", "PYTHONPATH": str(tmp_path)}
    result = cli(["train", *TINY_RUN, "schedule=sleep", "schedule.n_cycles=2", "sleep.ops=[replay,halve_lr]",
                  "run.plot=false", "eval.final=false", f"run.dir={tmp_path / 'run'}"], env, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    ops = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "sleep_op"]
    assert [(r["op"], r["peak_next"]) for r in ops] == [("halve_lr", 0.5), ("halve_lr", 0.25)]
    listed = cli(["train", "--help"], env, tmp_path)
    assert "halve_lr" in listed.stdout
    without = cli(["train", "sleep.ops=[halve_lr]"], {"PYTHONPATH": str(tmp_path)}, tmp_path)
    assert without.returncode == 2 and "sleep.ops: 'halve_lr' is not allowed" in without.stderr


def test_a_plugin_that_imports_the_schema_first_is_listed_in_help(tmp_path):
    """`--help` asks the registries when it prints: an op registered after `sleeptrain.config` was imported (here by
    the plugin itself, before it registers) is in the `sleep.ops` line, as a strategy is in `replay.strategy`'s."""
    (tmp_path / "late_ops.py").write_text(
        "import sleeptrain.config  # the schema first\n"
        "from sleeptrain.sleep import SleepHook, register_op, register_strategy\n\n"
        "@register_op('late_plugin_op')\nclass Late(SleepHook):\n    pass\n\n"
        "@register_strategy('late_strategy')\ndef late(k, scores, ages, rng, cfg):\n    return list(range(k))\n")
    listed = cli(["train", "--help"], {"SLEEPTRAIN_PLUGINS": "late_ops", "PYTHONPATH": str(tmp_path)}, tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert lines["sleep.ops"].rstrip().endswith("downscale, plasticity_decay, late_plugin_op")
    assert "weighted" in lines["replay.strategy"] and lines["replay.strategy"].rstrip().endswith("late_strategy")


def test_a_broken_plugin_is_one_line(tmp_path):
    (tmp_path / "broken_ops.py").write_text("raise RuntimeError('boom')\n")
    result = cli(["train", "--help"], {"SLEEPTRAIN_PLUGINS": "broken_ops,", "PYTHONPATH": str(tmp_path)}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sleeptrain: error: SLEEPTRAIN_PLUGINS module 'broken_ops': cannot be imported (RuntimeError: boom)"]
    missing = cli(["train", "--help"], {"SLEEPTRAIN_PLUGINS": "no_such_module_here"}, tmp_path)
    assert missing.returncode == 2 and "ModuleNotFoundError" in missing.stderr and "Traceback" not in missing.stderr


def test_register_op_checks_what_it_is_given():
    with pytest.raises(TypeError, match="subclass of sleeptrain.sleep.SleepHook"):
        register_op("not_a_hook")(lambda ctx: {})

    class InstanceFactor(SleepHook):
        def peak_lr_factor(self, cfg, cycle):
            return 1.0

    with pytest.raises(TypeError, match="peak_lr_factor must be a classmethod"):
        register_op("instance_factor")(InstanceFactor)
    with pytest.raises(ValueError, match="not 'replay' or 'controller'"):
        register_op("controller")(Tally)
    assert "not_a_hook" not in op_names() and "instance_factor" not in op_names()
