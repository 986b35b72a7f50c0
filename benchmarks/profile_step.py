"""Where a training step's time goes (issue 21 item 1), measured by timing the loop's own calls in this process.

    python -m benchmarks.profile_step [--model tiny small] [--schedule single_pass sleep_strict] [--steps N]
                                      [--data generated|corpus-mini] [--extra key=value ...] [--repeats N]

A real `sleeptrain train` run (one process, the precision `auto` picks) with timers wrapped around the calls the
loop makes; the first --warmup steps are not counted. Categories, in ms per optimizer step:
- data wait: time the loop waits for the next batch from the prefetch thread (gathering overlaps the step);
- batching: `make_batcher` (labels, MLM masking), on the loop's thread;
- forward (model body): the model's forward call — the transformer blocks (with the default chunked loss the
  output projection is not in it; with `train.loss=plain` it is);
- loss: the rest of `forward_losses` — with the chunked loss the output projection + cross-entropy forward and
  their gradients (computed in the same pass); with the plain loss the cross-entropy alone;
- backward: `accelerator.backward` (the body's backward; the chunked loss hands its gradients in);
- grad clip, optimizer step, zero_grad: `clip_grad_norm_`, AdamW `step`, `zero_grad`;
- per-sample scores: `per_sample_loss` + `Replay.record` (replay scores; only when replay is enabled);
- sleep hooks: `on_wake_step` / `on_sleep_step` (importance accumulation for downscaling) and sleep ops;
- words / logging: the BabyLM word counter, `log_train` (metrics.jsonl);
- other: the rest of the step (LR, sharding, device copies, Python).
Also the optimizer step alone (data wait excluded) for wake and sleep steps apart. `--repeats N` runs every
configuration N times, interleaved, and reports each one's fastest run (all of them in the JSON): on a shared
machine a single pass per configuration can put a slow spell on one of them.
Writes benchmarks/results/profile_step.json and prints a table per configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import machine, write_json

CATEGORIES = ("data wait", "batching", "forward (model body)", "loss", "backward", "grad clip", "optimizer step",
              "zero_grad", "per-sample scores", "sleep hooks", "words / logging", "other")
BENCH = ["train.compile=false", "run.progress=false", "run.plot=false", "eval.final=false", "train.eval_every=0",
         "checkpoint.every=0", "checkpoint.phase_boundaries=false", "checkpoint.words=[]", "train.log_every=10"]
DATA = {"generated": ["data.generated.train_sentences=60000"],
        "corpus-mini": ["data=babylm", "data.path=../shared/data/corpus-mini"]}


class StepTimer:
    """Accumulates seconds per category; counting starts after `warmup` optimizer steps."""

    def __init__(self, warmup: int):
        self.warmup, self.steps, self.seconds = warmup, 0, defaultdict(float)
        self.step_seconds = 0.0
        self.phase_seconds, self.phase_steps = defaultdict(float), defaultdict(int)  # wake / sleep steps apart

    @property
    def counting(self) -> bool:
        return self.steps >= self.warmup

    @contextlib.contextmanager
    def measure(self, category: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.counting:
                self.seconds[category] += time.perf_counter() - start

    def wrap(self, fn, category: str):
        @functools.wraps(fn)  # keeps the signature (Accelerate inspects zero_grad's)
        def timed(*args, **kwargs):
            with self.measure(category):
                return fn(*args, **kwargs)
        return timed


def timed_loop_functions(timer: StepTimer, loop) -> dict:
    """Timed versions of the training loop's own functions (the model body apart from the loss, the data wait,
    batching, whole steps by phase), each calling the original."""
    original_forward_losses, original_prefetched = loop.forward_losses, loop.prefetched
    original_make_batcher, original_train_step = loop.make_batcher, loop.TrainingLoop.train_step
    body = {"seconds": 0.0}
    hooked: set[int] = set()

    def forward_losses(model, *args, **kwargs):
        target = getattr(model, "module", model)
        if id(target) not in hooked:  # time the model's own forward call (the body)
            hooked.add(id(target))
            target.register_forward_pre_hook(lambda m, a: body.__setitem__("start", time.perf_counter()))
            target.register_forward_hook(
                lambda m, a, o: body.__setitem__("seconds", body["seconds"] + time.perf_counter() - body["start"]))
        body["seconds"] = 0.0
        start = time.perf_counter()
        out = original_forward_losses(model, *args, **kwargs)
        if timer.counting:
            total = time.perf_counter() - start
            timer.seconds["forward (model body)"] += body["seconds"]
            timer.seconds["loss"] += total - body["seconds"]
        return out

    def prefetched(load, items, enabled=True):
        iterator = original_prefetched(load, items, enabled)
        while True:
            with timer.measure("data wait"):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item

    def make_batcher(*args, **kwargs):
        return timer.wrap(original_make_batcher(*args, **kwargs), "batching")

    def train_step(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original_train_step(self, *args, **kwargs)
        finally:
            if timer.counting:
                seconds = time.perf_counter() - start
                timer.step_seconds += seconds
                timer.phase_seconds[self.stage.phase] += seconds
                timer.phase_steps[self.stage.phase] += 1
            timer.steps += 1

    return {"forward_losses": forward_losses, "prefetched": prefetched, "make_batcher": make_batcher,
            "train_step": train_step}


@contextlib.contextmanager
def instrumented(timer: StepTimer):
    """Patch the loop's collaborators with timed versions; restore them afterwards."""
    import accelerate
    import torch

    from sleeptrain.lm import loop
    from sleeptrain.sleep.cycle import SleepCycle
    from sleeptrain.sleep.replay import Replay

    saved = []

    def patch(owner, name, new):
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    timed = timed_loop_functions(timer, loop)
    for name in ("forward_losses", "prefetched", "make_batcher"):
        patch(loop, name, timed[name])
    patch(loop, "per_sample_loss", timer.wrap(loop.per_sample_loss, "per-sample scores"))
    patch(loop.TrainingLoop, "train_step", timed["train_step"])
    patch(loop.TrainingLoop, "log_train", timer.wrap(loop.TrainingLoop.log_train, "words / logging"))
    patch(loop.TrainingLoop, "apply_ops", timer.wrap(loop.TrainingLoop.apply_ops, "sleep hooks"))
    patch(loop.WordMeter, "count", timer.wrap(loop.WordMeter.count, "words / logging"))
    patch(Replay, "record", timer.wrap(Replay.record, "per-sample scores"))
    patch(SleepCycle, "on_wake_step", timer.wrap(SleepCycle.on_wake_step, "sleep hooks"))
    patch(SleepCycle, "on_sleep_step", timer.wrap(SleepCycle.on_sleep_step, "sleep hooks"))
    patch(accelerate.Accelerator, "backward", timer.wrap(accelerate.Accelerator.backward, "backward"))
    patch(accelerate.Accelerator, "clip_grad_norm_", timer.wrap(accelerate.Accelerator.clip_grad_norm_, "grad clip"))
    patch(torch.optim.AdamW, "step", timer.wrap(torch.optim.AdamW.step, "optimizer step"))
    patch(torch.optim.Optimizer, "zero_grad", timer.wrap(torch.optim.Optimizer.zero_grad, "zero_grad"))
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def profile(model: str, schedule: str, steps: int, warmup: int, data: str, extra: list[str]) -> dict:
    from sleeptrain.lm.metrics_log import read_metrics
    from sleeptrain.lm.train import train
    from sleeptrain.presets import load_config

    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as tmp:
        cap = [f"train.max_steps={steps}"] if steps else []
        cfg = load_config([*DATA[data], *BENCH, f"model={model}", f"schedule={schedule}", *cap, *extra,
                           f"run.dir={Path(tmp) / 'run'}"]).config
        with instrumented(timer):
            train(cfg)
        start = read_metrics(Path(tmp) / "run" / "metrics.jsonl")[0]
    counted = timer.steps - warmup
    if counted <= 0:
        raise SystemExit(f"--steps: the run made {timer.steps} steps, not more than --warmup {warmup}")
    ms = {c: 1000 * timer.seconds.get(c, 0.0) / counted for c in CATEGORIES if c != "other"}
    step_ms = 1000 * (timer.step_seconds + timer.seconds.get("data wait", 0.0)) / counted
    ms["other"] = step_ms - sum(ms.values())
    tokens = cfg.train.batch_size * cfg.data.seq_len
    # the optimizer step alone (no data wait), wake and sleep steps apart: is a replay step dearer than a wake step?
    by_phase = {phase: {"steps": n, "ms": 1000 * timer.phase_seconds[phase] / n}
                for phase, n in sorted(timer.phase_steps.items())}
    return {"model": model, "schedule": schedule, "data": data, "steps_counted": counted, "step_ms": step_ms,
            "tokens_per_s": tokens / (step_ms / 1000), "ms": ms, "by_phase": by_phase,
            "share": {c: v / step_ms for c, v in ms.items()}, "precision": start.get("precision"),
            "batch": cfg.train.batch_size, "seq_len": cfg.data.seq_len, "overrides": extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["tiny", "small"])
    parser.add_argument("--schedule", nargs="+", default=["single_pass", "sleep_strict"])
    parser.add_argument("--steps", type=int, default=0, help="cap on optimizer steps (default: the whole plan, "
                        "sleeps included)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--data", choices=sorted(DATA), default="generated")
    parser.add_argument("--extra", nargs="*", default=[], help="key=value overrides for every run")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration, interleaved (A B A B): "
                        "the table shows each one's fastest run, the JSON all of them")
    args = parser.parse_args()
    rows = []
    for model in args.model:
        repeats: dict[str, list[dict]] = defaultdict(list)
        for _ in range(args.repeats):  # interleaved, so a slow spell of a shared machine hits every configuration
            for schedule in args.schedule:
                repeats[schedule].append(profile(model, schedule, args.steps, args.warmup, args.data, args.extra))
        for schedule, runs in repeats.items():
            row = {**min(runs, key=lambda r: r["step_ms"]), "repeats_step_ms": [r["step_ms"] for r in runs]}
            rows.append(row)
            print(f"\n{model} / {schedule} / {args.data} ({row['precision']}, batch {row['batch']} x {row['seq_len']}): "
                  f"{row['step_ms']:.1f} ms per step, {row['tokens_per_s']:,.0f} tok/s over {row['steps_counted']} steps"
                  f" (fastest of {len(runs)}: " + ", ".join(f"{ms:.1f}" for ms in row["repeats_step_ms"]) + ")")
            for c in CATEGORIES:
                print(f"  {c:<22} {row['ms'][c]:8.2f} ms  {100 * row['share'][c]:5.1f} %")
            print("  optimizer step alone: " + "; ".join(f"{phase} {v['ms']:.1f} ms ({v['steps']} steps)"
                                                        for phase, v in row["by_phase"].items()))
    path = write_json("profile_step", {"machine": machine(), "runs": rows})
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
