"""How SRC works: the SRC paper's analyses (Figs. 4-6, confusion matrices, weight changes) on the reduced two-task
MNIST — digits 0/1 (task 1), then 2/3 (task 2), a sleep after each; the second sleep is the one analysed.

`sleeptrain continual analyse data_path=MNIST_FOLDER [key=value ...]` trains with the `split_mnist` preset (any of its
keys may be overridden) and writes `analysis.json` and five PNGs (`analysis_plots.py`):

- **Fig. 4, correlations**: for each hidden layer, the Pearson correlation between the activation vectors of two test
  images, averaged over image pairs by class (0-3), before and after the sleep (`compute_activation_correlation_2tasks.m`),
  plus the fraction of neurons each image activates (sparseness).
- **Fig. 5, input to task neurons**: task-specific neurons are found as the paper's Methods say — each class's images
  drive the net converted to Heaviside neurons (the sleep's scales and thresholds, no plasticity, output layer
  ignored) for 25 steps; a neuron belongs to the class that makes it spike most, and each class keeps its 100 most
  active — and the mean input (pre-activation) to each task's 200 neurons on its own test images is compared before
  and after the sleep.
- **Fig. 6, firing during sleep**: the same net sleeps on a completely random input (each pixel's rate drawn
  U(0, 1) once, instead of the mean image: the paper's control for bias from the task-averaged input); spikes per
  step of each class's neurons against 100 random neurons (two-sided t-tests, Bonferroni), and task 2's 200 neurons
  against task 1's (one-sided), as the paper reports.
- **Confusion matrices** of the test images 0-3 before and after the sleep (`confmat_2tasks.m`; predictions outside
  0-3 in an `other` column).
- **Weight changes** by layer and sign (`plot_weight_distributions.m`): how many weights rose, fell or stayed, and
  the distributions of the changes and of the starting weights of each group.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sleeptrain.continual.config import ContinualConfig
from sleeptrain.continual.data import split_mnist
from sleeptrain.continual.methods import build_net
from sleeptrain.continual.mlp import BiaslessMLP, Trainer
from sleeptrain.continual.src import DT, SRCParams, layer_scales, src_sleep

CLASSES = [0, 1, 2, 3]
TOP = 100               # neurons per class (the paper's "top 100")
PRESENT_STEPS = 25      # forward passes per class when labelling neurons


@torch.no_grad()
def hidden_inputs(weights: list[torch.Tensor], x: torch.Tensor, dropout: float) -> tuple[list, list]:
    """Pre-activations and activations (testing mode: ReLU x (1 - dropout)) of every hidden layer."""
    zs, hs, h = [], [], x
    for w in weights[:-1]:
        z = h @ w.T
        h = torch.relu(z) * (1.0 - dropout)
        zs.append(z)
        hs.append(h)
    return zs, hs


@torch.no_grad()
def class_spike_counts(weights, alphas, params: SRCParams, images: torch.Tensor, gen: torch.Generator) -> list:
    """Mean spikes per image of each hidden neuron when `images` drive the Heaviside net for 25 steps."""
    mems = [torch.zeros(len(images), w.shape[0]) for w in weights[:-1]]
    counts = [torch.zeros(w.shape[0]) for w in weights[:-1]]
    prob = (2.0 * DT * params.max_rate * images).clamp(max=1.0)
    for _ in range(PRESENT_STEPS):
        pre = (torch.rand(prob.shape, generator=gen) < prob).float()
        for l, w in enumerate(weights[:-1]):
            mems[l].mul_(params.decay).add_(alphas[l] * (pre @ w.T))
            post = (mems[l] >= params.betas[l]).float()
            mems[l].mul_(1.0 - post)
            counts[l] += post.sum(0)
            pre = post
    return [c / len(images) for c in counts]


def task_neurons(counts_by_class: list[list[torch.Tensor]]) -> list[dict[int, list[int]]]:
    """Per hidden layer: class -> its (up to) 100 neurons, those that spike most for it and for no other class more."""
    out = []
    for layer in range(len(counts_by_class[0])):
        table = torch.stack([counts[layer] for counts in counts_by_class])   # (classes, neurons)
        preferred = table.argmax(dim=0)
        active = table.max(dim=0).values > 0
        groups = {}
        for i, c in enumerate(CLASSES):
            mine = torch.nonzero((preferred == i) & active).flatten()
            order = table[i, mine].argsort(descending=True)
            groups[c] = mine[order][:TOP].tolist()
        out.append(groups)
    return out


def correlations(hs: list[torch.Tensor], labels: torch.Tensor) -> list[list[list[float]]]:
    """Per layer, the 4 x 4 matrix of mean correlation between images' activation vectors by class pair."""
    out = []
    for h in hs:
        c = np.corrcoef(h.numpy())   # rows with no active neuron give NaN, skipped as the code's nanmean
        out.append([[float(np.nanmean(c[np.ix_((labels == a).numpy(), (labels == b).numpy())]))
                     for b in CLASSES] for a in CLASSES])
    return out


def confusion(net: BiaslessMLP, x: torch.Tensor, y: torch.Tensor) -> list[list[int]]:
    pred = net.predict(x)
    return [[int(((y == a) & (pred == b)).sum()) for b in CLASSES] + [int(((y == a) & (pred > 3)).sum())]
            for a in CLASSES]


def weight_changes(before: list[torch.Tensor], after: list[torch.Tensor]) -> list[dict]:
    out = []
    for w0, w1 in zip(before, after):
        d = (w1 - w0).flatten()
        up, down = d > 0, d < 0
        out.append({"n": d.numel(), "increased": int(up.sum()), "decreased": int(down.sum()),
                    "unchanged": int((d == 0).sum()), "mean_increase": float(d[up].mean()) if up.any() else 0.0,
                    "mean_decrease": float(d[down].mean()) if down.any() else 0.0,
                    "before_mean_of_increased": float(w0.flatten()[up].mean()) if up.any() else 0.0,
                    "before_mean_of_decreased": float(w0.flatten()[down].mean()) if down.any() else 0.0})
    return out


def firing_tests(rates: list[torch.Tensor], groups: list[dict], gen: torch.Generator) -> list[dict]:
    """Per hidden layer: spikes per step of each class's neurons and of 100 random ones, with the paper's tests."""
    from scipy import stats

    out = []
    for rate, by_class in zip(rates, groups):
        random_ids = torch.randperm(len(rate), generator=gen)[:TOP].tolist()
        base = rate[random_ids].numpy()
        entry = {"random": {"mean": float(base.mean()), "sd": float(base.std(ddof=1))}, "classes": {}}
        for c, ids in by_class.items():
            r = rate[ids].numpy()
            test = stats.ttest_ind(r, base) if len(r) > 1 else None
            entry["classes"][str(c)] = {"n": len(ids), "mean": float(r.mean()) if len(r) else 0.0,
                                        "sd": float(r.std(ddof=1)) if len(r) > 1 else 0.0,
                                        "p_vs_random_bonferroni": None if test is None or np.isnan(test.pvalue)
                                        else min(1.0, float(test.pvalue) * len(by_class))}
        t1 = rate[by_class[0] + by_class[1]].numpy()
        t2 = rate[by_class[2] + by_class[3]].numpy()
        test = stats.ttest_ind(t2, t1, alternative="greater") if len(t1) > 1 and len(t2) > 1 else None
        entry["task2_vs_task1"] = None if test is None or np.isnan(test.statistic) else {
            "t": float(test.statistic), "df": len(t1) + len(t2) - 2,
            "p_one_sided_bonferroni": min(1.0, float(test.pvalue) * len(rates))}
        out.append(entry)
    return out


def _train_both_tasks(cfg: ContinualConfig, bench, net: BiaslessMLP, weights: list[torch.Tensor]) -> dict:
    """Task 1, the first sleep, task 2 (the split_mnist preset's run); the task accuracies after each."""
    trainer = Trainer(net, cfg.seed)
    t1, t2 = bench.tasks
    trainer.fit(t1.x_train, t1.y_train, cfg.sgd)
    accuracy = {"after_task1": [net.accuracy(t.x_test, t.y_test) for t in bench.tasks]}
    src_sleep(weights, t1.seen.mean(0), net.activation_maxima(t1.seen), cfg.src, seed=cfg.seed * 1000,
              image_shape=bench.image_shape)
    accuracy["after_sleep1"] = [net.accuracy(t.x_test, t.y_test) for t in bench.tasks]
    trainer.fit(t2.x_train, t2.y_train, cfg.sgd)
    accuracy["after_task2"] = [net.accuracy(t.x_test, t.y_test) for t in bench.tasks]
    return accuracy


def _task_neuron_input(groups: list[dict], zs_before: list, zs_after: list, y_test: torch.Tensor) -> list[dict]:
    """Mean input to each task's neurons on that task's test images, before and after the sleep (Fig. 5)."""
    task_inputs = []
    for layer, by_class in enumerate(groups):
        entry = {}
        for task, ids, mask in (("task1", by_class[0] + by_class[1], y_test < 2),
                                ("task2", by_class[2] + by_class[3], y_test >= 2)):
            entry[task] = {"neurons": len(ids), "before": float(zs_before[layer][mask][:, ids].mean()),
                           "after": float(zs_after[layer][mask][:, ids].mean())}
        task_inputs.append(entry)
    return task_inputs


def analyse(cfg: ContinualConfig, run_dir: Path) -> dict:
    start, seed = time.time(), cfg.seed
    bench = split_mnist(cfg.data_path, CLASSES, cfg.train_per_task)
    t1, t2 = bench.tasks
    gen = torch.Generator().manual_seed(seed)
    net = build_net(cfg, bench, gen)
    weights = [w.data for w in net.weights]

    def log(text: str) -> None:
        print(f"  {text} ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)

    accuracy = _train_both_tasks(cfg, bench, net, weights)
    shape = bench.image_shape
    log(f"trained: task accuracies after task 2 {accuracy['after_task2']}")

    seen = torch.cat([t1.seen, t2.seen])
    params = replace(cfg.src, iterations=cfg.src.iterations + cfg.src.growth)
    maxima = net.activation_maxima(seen)
    alphas = layer_scales(weights, maxima, params.alpha_scale)
    before = [w.clone() for w in weights]
    x_test = torch.cat([t1.x_test, t2.x_test])
    y_test = torch.cat([t1.y_test, t2.y_test])
    x_seen_labels = torch.cat([t1.seen_labels, t2.seen_labels])
    counts = [class_spike_counts(before, alphas, params, seen[x_seen_labels == c][:500], gen) for c in CLASSES]
    groups = task_neurons(counts)
    log("labelled task-specific neurons; random-input sleep")
    random_input = torch.rand(seen.shape[1], generator=gen)
    control = [w.clone() for w in before]
    control_info = src_sleep(control, random_input, maxima, params, seed=seed * 1000 + 7, neuron_counts=True,
                             image_shape=shape)
    rates = [n / control_info["steps"] for n in control_info["neuron_spikes"][1:-1]]
    zs_before, hs_before = hidden_inputs(before, x_test, cfg.net.dropout)
    confusion_before = confusion(net, x_test, y_test)
    log("the analysed sleep")
    info = src_sleep(weights, seen.mean(0), maxima, params, seed=seed * 1000 + 1, image_shape=shape)
    accuracy["after_sleep2"] = [net.accuracy(t.x_test, t.y_test) for t in bench.tasks]
    zs_after, hs_after = hidden_inputs(weights, x_test, cfg.net.dropout)

    task_inputs = _task_neuron_input(groups, zs_before, zs_after, y_test)
    result = {
        "setting": "two-task MNIST: task 1 = digits 0/1, task 2 = 2/3 (first train_per_task images of each), the "
                   "split_mnist preset; the sleep after task 2 is analysed",
        "accuracy": accuracy, "seed": seed, "sleep_steps": info["steps"], "alphas": [float(a) for a in alphas],
        "correlations": {"before": correlations(hs_before, y_test), "after": correlations(hs_after, y_test)},
        "active_fraction": {"before": [float((h > 0).float().mean()) for h in hs_before],
                            "after": [float((h > 0).float().mean()) for h in hs_after]},
        "task_neuron_input": task_inputs,
        "firing_rates": firing_tests(rates, groups, gen),
        "confusion": {"labels": [*map(str, CLASSES), "other"], "before": confusion_before,
                      "after": confusion(net, x_test, y_test)},
        "weight_changes": weight_changes(before, weights),
        "seconds": time.time() - start,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "analysis.json").write_text(json.dumps(result, indent=1))
    from sleeptrain.continual.analysis_plots import plot_analysis

    plot_analysis(result, before, [w.clone() for w in weights], run_dir)
    return result


def describe_analysis(result: dict, run_dir: Path) -> str:
    acc = result["accuracy"]
    lines = [f"analysis of the second sleep ({result['seconds']:.0f} s) -> {run_dir}",
             f"  accuracy task 1 / task 2: after task 2 {acc['after_task2'][0]:.3f} / {acc['after_task2'][1]:.3f}, "
             f"after the sleep {acc['after_sleep2'][0]:.3f} / {acc['after_sleep2'][1]:.3f}"]
    for layer, entry in enumerate(result["task_neuron_input"], 1):
        lines.append(f"  layer {layer} input to task neurons: task 1 {entry['task1']['before']:+.3f} -> "
                     f"{entry['task1']['after']:+.3f}, task 2 {entry['task2']['before']:+.3f} -> "
                     f"{entry['task2']['after']:+.3f}")
    lines.append("  PNGs: correlations.png, task_neuron_input.png, firing_rates.png, confusion.png, weights.png")
    return "\n".join(lines)
