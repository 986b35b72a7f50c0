"""Evaluation during training: validation loss and fast minimal-pair accuracy of the current model, each written
as one record (`event: "eval"` / `event: "blimp"`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from sleeptrain.data.samples import RandomWindows
from sleeptrain.lm.validation import validation_loss


class Evaluator:
    """`log` writes one metrics record (the loop's `LoopState` keeps the first and latest validation loss);
    `blimp_pairs` (set when `eval.blimp_every` is on) are the minimal pairs of the periodic evaluation."""

    def __init__(self, cfg, accelerator, tokenizer, dev_samples, batch_size: int,
                 log: Callable[[dict[str, Any]], None]):
        self.cfg, self.acc, self.tokenizer, self.dev_samples = cfg, accelerator, tokenizer, dev_samples
        self.batch_size, self.log = batch_size, log
        self.masked = cfg.model.is_masked_lm
        self.blimp_pairs = None

    def validation(self, model: torch.nn.Module, step: int, tokens: int) -> float:
        """Validation loss of `model` (unwrapped) over the dev split (or its first `train.eval_max_batches`), or over
        windows drawn afresh for this evaluation (`train.eval_windows=random`)."""
        result = validation_loss(model, self.samples_at(step), self.tokenizer, masked=self.masked,
                                 batch_size=self.batch_size, device=self.acc.device,
                                 max_batches=self.cfg.train.eval_max_batches,
                                 mlm_probability=self.cfg.model.mlm_probability, seed=self.cfg.seed,
                                 autocast=self.acc.autocast)
        self.log({"event": "eval", "step": step, "tokens": tokens, **result})
        if self.cfg.train.trackers:
            self.acc.log({"val_loss": result["val_loss"]}, step=step)
        return result["val_loss"]

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
        from sleeptrain.evaluate.config import eval_command_schema
        from sleeptrain.evaluate.task_blimp import BlimpTask
        from sleeptrain.evaluate.tasks import LoadedModel, TaskContext

        opts = eval_command_schema()(batch_size=self.cfg.eval.batch_size, progress=False)
        opts.blimp.method = self.cfg.eval.method
        was_training = model.training
        model.eval()
        loaded = LoadedModel(model, self.tokenizer, self.masked, Path(self.cfg.run.dir or "."))
        result = BlimpTask().run(loaded, opts.blimp, (self.blimp_pairs, "periodic"), TaskContext(opts, loaded.path))
        model.train(was_training)
        self.log({"event": "blimp", "step": step, "tokens": tokens, "overall": result["overall"],
                  "pairs": result["pairs"], "tie_rate": result["tie_rate"],
                  "by_phenomenon": {k: v["accuracy"] for k, v in result["by_phenomenon"].items()}})
