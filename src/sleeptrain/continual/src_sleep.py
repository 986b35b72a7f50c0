"""The SRC sleep as a part of a continual method (`src`, `rehearsal_src`, `icarl_src`): after every task (or the
tasks in `sleep_after`) the authors' sleep (`sleeptrain.continual.src`) on the mean input of the tasks seen so far
(or the first task's, `bench.sleep_source`), normalised on the seen tasks' activations (or this task's), for
`src.iterations + (t - 1) x src.growth` iterations."""

from __future__ import annotations

from dataclasses import replace

import torch

from sleeptrain.continual.parts import Part, TaskRun
from sleeptrain.continual.src import src_sleep


class SRCSleep(Part):
    def sleep(self, run: TaskRun) -> dict | None:
        src, t, task = run.cfg.src, run.t, run.task
        if src.sleep_after is not None and t + 1 not in src.sleep_after:
            return None
        params = replace(src, iterations=src.iterations + t * src.growth)
        sleep_data = run.seen_inputs[0] if run.bench.sleep_source == "first" else torch.cat(run.seen_inputs)
        norm_data = sleep_data if src.norm_data == "seen" else task.x_train
        weights = [w.data for w in run.net.weights]
        info = src_sleep(weights, sleep_data.mean(dim=0), run.net.activation_maxima(norm_data), params,
                         seed=run.seed * 1000 + t, image_shape=run.bench.image_shape)
        return {"task": task.name, **{k: v for k, v in info.items() if k != "alphas"},
                "alphas": [float(a) for a in info["alphas"]]}
