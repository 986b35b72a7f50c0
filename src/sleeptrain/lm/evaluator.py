"""Evaluation during training: validation loss and fast minimal-pair accuracy of the current model, each written
as one record (`event: "eval"` / `event: "blimp"`); at the end, the test-split loss (`event: "test"`) and, before
the last sleep's end ops, the model as it was then (`event: "pre_end_ops"`). Only the dev split ever selects
(the controller, the best epoch, tuning); the test split is for verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from sleeptrain.data.samples import RandomWindows
from sleeptrain.lm.validation import validation_loss


class Evaluator:
    """`log` writes one metrics record (the loop's `LoopState` keeps the first and latest validation loss);
    `blimp_pairs` (set when `eval.blimp_every` is on) are the minimal pairs of the periodic evaluation."""

    def __init__(self, cfg, accelerator, tokenizer, dev_samples, batch_size: int,
                 log: Callable[[dict[str, Any]], None], test_samples=None):
        self.cfg, self.acc, self.tokenizer, self.dev_samples = cfg, accelerator, tokenizer, dev_samples
        self.test_samples = test_samples
        self.batch_size, self.log = batch_size, log
        self.masked = cfg.model.is_masked_lm
        self.blimp_pairs = None

    def validation(self, model: torch.nn.Module, step: int, tokens: int) -> float:
        """Validation loss of `model` (unwrapped) over the dev split (or its first `train.eval_max_batches`), or over
        windows drawn afresh for this evaluation (`train.eval_windows=random`)."""
        result = self.loss_on(model, self.samples_at(step))
        self.log({"event": "eval", "step": step, "tokens": tokens, **result})
        if self.cfg.train.trackers:
            self.acc.log({"val_loss": result["val_loss"]}, step=step)
        return result["val_loss"]

    def loss_on(self, model: torch.nn.Module, samples) -> dict[str, float]:
        return validation_loss(model, samples, self.tokenizer, masked=self.masked, batch_size=self.batch_size,
                               device=self.acc.device, max_batches=self.cfg.train.eval_max_batches,
                               mlm_probability=self.cfg.model.mlm_probability, seed=self.cfg.seed,
                               autocast=self.acc.autocast)

    def test(self, model: torch.nn.Module, step: int, tokens: int) -> float | None:
        """Loss on the test split, measured as the validation loss is (the first `train.eval_max_batches` batches,
        fixed windows); None when the data has no test split."""
        if self.test_samples is None:
            return None
        result = self.loss_on(model, self.test_samples)
        self.log({"event": "test", "step": step, "tokens": tokens, "test_loss": result["val_loss"],
                  "test_ppl": result["val_ppl"], "test_tokens": result["val_tokens"]})
        return result["val_loss"]

    def before_end_ops(self, model: torch.nn.Module, state, folder: Path,
                       save: Callable[[Path], None]) -> dict[str, Any]:
        """The model just before the last sleep's end ops (a final shrink or reset changes the weights with no
        training after it): its dev and test loss now, and the model itself saved to `folder` (process 0), which
        the final evaluation scores beside `final/`."""
        step = state.step  # the run's LoopState (read only)
        record = {"step": step, "tokens": state.tokens,
                  "val_loss": self.loss_on(model, self.samples_at(step))["val_loss"],
                  "test_loss": (self.loss_on(model, self.test_samples)["val_loss"]
                                if self.test_samples is not None else None), "dir": str(folder)}
        if self.acc.is_main_process:
            save(folder)
        if self.acc.num_processes > 1:
            self.acc.wait_for_everyone()
        self.log({"event": "pre_end_ops", **record})
        return record

    def samples_at(self, step: int):
        """The dev windows scored at `step`: the fixed split, or `eval_max_batches × batch` windows at uniform random
        starts of the dev text from a generator seeded by (seed, step) - fresh every evaluation, the same on resume."""
        tc = self.cfg.train
        if tc.eval_windows == "split":
            return self.dev_samples
        return RandomWindows(self.dev_samples.store, self.dev_samples.seq_len, self.dev_samples.pad_id,
                             tc.eval_max_batches * self.batch_size, self.cfg.seed, stream=(0xDE5, step),
                             key="train.eval_windows")

    def blimp(self, model: torch.nn.Module, step: int, tokens: int) -> None:
        """Fast minimal-pair accuracy on `eval.blimp_n` pairs per paradigm: the `blimp` evaluation task (the one the
        final evaluation and `sleeptrain eval` run) on those pairs."""
        from sleeptrain.evaluate.config import run_eval_options
        from sleeptrain.evaluate.task_blimp import BlimpTask
        from sleeptrain.evaluate.tasks import LoadedModel, TaskContext

        opts = run_eval_options(self.cfg, max_pairs=self.cfg.eval.blimp_n, progress=False)
        was_training = model.training
        model.eval()
        loaded = LoadedModel(model, self.tokenizer, self.masked, Path(self.cfg.run.dir or "."))
        result = BlimpTask().run(loaded, opts.blimp, (self.blimp_pairs, "periodic"), TaskContext(opts, loaded.path))
        model.train(was_training)
        self.log({"event": "blimp", "step": step, "tokens": tokens, "overall": result["overall"],
                  "pairs": result["pairs"], "tie_rate": result["tie_rate"],
                  "by_phenomenon": {k: v["accuracy"] for k, v in result["by_phenomenon"].items()}})

    def suite(self, model: torch.nn.Module, folder: Path, state) -> None:
        """`eval.suite=babylm-fast` on the word checkpoint just written to `folder`: the `babylm` task (the one
        `sleeptrain eval ... suite=babylm-fast` runs) on the current weights, its files under folder/eval/babylm, one
        record (event 'babylm') with each dataset's average; `state`: the run's LoopState (read only). The data is
        read once per run."""
        from sleeptrain.evaluate.config import run_eval_options
        from sleeptrain.evaluate.task_babylm import BabyLMTask
        from sleeptrain.evaluate.tasks import LoadedModel, TaskContext
        from sleeptrain.fsutil import atomic_write_text

        opts = run_eval_options(self.cfg, progress=False)
        opts.babylm.enabled, opts.babylm.suite, opts.babylm.data = True, "fast", self.cfg.eval.suite_data
        task, ctx = BabyLMTask(), TaskContext(opts, folder)
        if getattr(self, "suite_data", None) is None:
            self.suite_data = task.prepare(opts.babylm, ctx)
        was_training = model.training
        model.eval()
        result = task.run(LoadedModel(model, self.tokenizer, self.masked, folder), opts.babylm, self.suite_data, ctx)
        model.train(was_training)
        out = folder / "eval" / "results-babylm-fast.json"
        atomic_write_text(out, json.dumps({"babylm": result}, indent=1))
        task.write_files(out, opts.babylm)
        self.log({"event": "babylm", "step": state.step, "tokens": state.tokens, "words": state.words,
                  "dir": str(folder),
                  "averages": {name: d["average"] for name, d in result["datasets"].items()},
                  **({"reading": {k: result["reading"][k] for k in ("eye_tracking_score", "self_paced_reading_score")}}
                     if "reading" in result else {})})

