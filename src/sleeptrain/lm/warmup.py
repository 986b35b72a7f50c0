"""torch.compile warm-up: compile forward and backward for every batch shape of the plan before step 0, so no phase
boundary recompiles mid-run. The passes run on real samples under a forked RNG, without gradient sync, and their
gradients are dropped: training is unchanged."""

from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np
import torch

from sleeptrain.data.samples import IGNORE_INDEX
from sleeptrain.errors import ConfigError
from sleeptrain.lm.chunked_loss import DEFAULT_CHUNK_BYTES
from sleeptrain.lm.losses import forward_losses


def batch_shapes(plan, batch_size: int, micro: int, shard: Callable[[int], slice]) -> list[int]:
    """Every distinct micro-batch row count this process meets in the plan (full batches, fold remainders)."""
    global_rows = {batch_size}
    for stage in plan.stages:
        if stage.phase == "wake" and stage.steps:
            global_rows.add(stage.fold[1] - stage.fold[0] - (stage.steps - 1) * plan.batch_size)
    shapes = set()
    for n in global_rows:
        local = max(shard(n).stop - shard(n).start, 1)
        shapes.update(min(micro, local - s) for s in range(0, local, micro))
    return sorted(shapes)


def warm_compiled(accelerator, model, optimizer, shapes: list[int], train_samples, dev_samples, masked: bool,
                  micro: int, to_device: Callable[[torch.Tensor], torch.Tensor], loss_impl: str = "plain",
                  chunk_bytes: int = DEFAULT_CHUNK_BYTES, test_samples=None) -> None:
    """Run forward + backward on every training shape and forward on every evaluation shape (dev, and the test split
    the run scores at its end) of a compiled `model` (as prepared by `accelerator`); the chunked loss's compiled
    blocks with the run's `chunk_bytes`."""
    device = accelerator.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for rows in shapes:
            ids, mask = train_samples.get(np.arange(min(rows, len(train_samples))))
            ids, mask = to_device(ids), to_device(mask)
            keep_mask = None if not masked and bool((mask[:, 1:] <= mask[:, :-1]).all()) else mask
            # entered exactly as train_step enters it (the prepared model applies autocast inside): an outer
            # autocast here changes the global state Dynamo guards on, and bf16 runs recompiled at step 0
            with accelerator.no_sync(model):
                labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
                loss, _, _ = forward_losses(model, ids, keep_mask, labels, masked, 0.0, loss_impl, chunk_bytes,
                                            compiled=True)
                accelerator.backward(loss)
            optimizer.zero_grad(set_to_none=True)
        plain = accelerator.unwrap_model(model)  # evaluation: eval mode, no grad, masks as validation passes
        plain.eval()
        with torch.no_grad(), accelerator.autocast():
            for samples in [s for s in (dev_samples, test_samples) if s is not None]:
                n = len(samples)
                for rows in sorted({min(micro, n), n % micro or micro}):
                    ids, mask = samples.get(np.arange(rows))
                    plain(input_ids=to_device(ids), attention_mask=to_device(mask))
        plain.train()


def warm_or_eager(accelerator, model, optimizer, shapes: list[int], train_samples, dev_samples, masked: bool,
                  micro: int, to_device: Callable[[torch.Tensor], torch.Tensor], loss_impl: str, chunk_bytes: int,
                  setting: str, log: Callable[[dict], None], test_samples=None) -> bool:
    """`warm_compiled`, logged (`compile` record with the shapes and seconds). Returns whether the model is compiled
    and warm. A failure (no working compiler toolchain, an op Inductor cannot take) under `setting` "auto" undoes
    the compile: the run goes on eager, said in one warning line and a `compile_failed` record; an explicit "true"
    stops with a one-line ConfigError giving the reason."""
    start = time.time()
    try:
        warm_compiled(accelerator, model, optimizer, shapes, train_samples, dev_samples, masked, micro, to_device,
                      loss_impl, chunk_bytes, test_samples)
    except Exception as err:  # torch.compile raises many kinds (BackendCompilerFailed, InductorError, OSError)
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:300]
        if setting != "auto":
            raise ConfigError(f"train.compile: torch.compile failed ({reason}); use train.compile=false "
                              "(or auto, which falls back to eager)") from err
        accelerator.unwrap_model(model)._compiled_call_impl = None  # undo nn.Module.compile()
        optimizer.zero_grad(set_to_none=True)
        log({"event": "compile_failed", "reason": reason})
        if accelerator.is_main_process:
            print(f"sleeptrain: warning: train.compile=auto: torch.compile failed ({reason}); training eager",
                  file=sys.stderr, flush=True)
        return False
    log({"event": "compile", "batch_shapes": shapes, "seconds": time.time() - start})
    return True
