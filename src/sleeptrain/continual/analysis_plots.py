"""The PNGs of `sleeptrain continual analyse` (`analysis.py`): correlations (Fig. 4), input to task neurons (Fig. 5),
firing during sleep (Fig. 6), confusion matrices and weight changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _annotated(ax, matrix, labels_x, labels_y, fmt, vmin=None, vmax=None, cmap="Greys"):
    m = np.asarray(matrix, dtype=float)
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
    mid = (np.nanmax(m) + np.nanmin(m)) / 2 if vmax is None else (vmin + vmax) / 2
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > mid else "black")
    ax.set_xticks(range(m.shape[1]), labels_x)
    ax.set_yticks(range(m.shape[0]), labels_y)
    return im


def _finish(plt, fig, path: Path, title: str | None = None) -> None:
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


DIGITS = ["0", "1", "2", "3"]


def plot_analysis(result: dict, before: list[torch.Tensor], after: list[torch.Tensor], out: Path) -> None:
    """Write the five PNGs of one analysis into `out`."""
    plt = _pyplot()
    _plot_correlations(plt, result, out / "correlations.png")
    _plot_task_neuron_input(plt, result["task_neuron_input"], out / "task_neuron_input.png")
    _plot_firing_rates(plt, result["firing_rates"], out / "firing_rates.png")
    _plot_confusion(plt, result["confusion"], out / "confusion.png")
    _plot_weights(plt, before, after, out / "weights.png")


def _plot_correlations(plt, result: dict, path: Path) -> None:
    corr = result["correlations"]
    layers = len(corr["before"])
    fig, axes = plt.subplots(layers, 2, figsize=(6.4, 3.1 * layers), squeeze=False)
    for layer in range(layers):
        for col, when in enumerate(("before", "after")):
            ax = axes[layer][col]
            _annotated(ax, corr[when][layer], DIGITS, DIGITS, ".2f", vmin=-0.1, vmax=0.7)
            sparse = result["active_fraction"][when][layer]
            ax.set_title(f"layer {layer + 1}, {when} SRC\n(active neurons per image {sparse:.0%})", fontsize=9)
    _finish(plt, fig, path, "Correlation of hidden activations by digit (Fig. 4)")


def _plot_task_neuron_input(plt, task_inputs: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, len(task_inputs), figsize=(3.4 * len(task_inputs), 3.2), squeeze=False)
    for layer, entry in enumerate(task_inputs):
        ax = axes[0][layer]
        x = np.arange(2)
        for k, (task, color) in enumerate((("task1", "tab:blue"), ("task2", "tab:orange"))):
            ax.bar(x + (k - 0.5) * 0.38, [entry[task]["before"], entry[task]["after"]], 0.38, color=color,
                   label=f"{task.replace('task', 'task ')} neurons ({entry[task]['neurons']})")
        ax.set_xticks(x, ["before SRC", "after SRC"])
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(f"layer {layer + 1}", fontsize=9)
        ax.set_ylabel("mean input on the task's test images")
        ax.legend(fontsize=7)
    _finish(plt, fig, path, "Input to task-specific neurons (Fig. 5)")


def _plot_firing_rates(plt, firing: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, len(firing), figsize=(3.4 * len(firing), 3.2), squeeze=False)
    for layer, entry in enumerate(firing):
        ax = axes[0][layer]
        names = [*entry["classes"], "random"]
        stats = [*entry["classes"].values(), entry["random"]]
        ax.bar(range(len(names)), [s["mean"] for s in stats], yerr=[s["sd"] for s in stats], capsize=3,
               color=["tab:blue", "tab:blue", "tab:orange", "tab:orange", "grey"])
        ax.set_xticks(range(len(names)), [f"digit {n}" if n != "random" else n for n in names], fontsize=7)
        ax.set_ylabel("spikes per sleep step")
        test = entry.get("task2_vs_task1")
        note = f"\ntask 2 > task 1: t({test['df']}) = {test['t']:.2f}" if test else ""
        ax.set_title(f"layer {layer + 1}{note}", fontsize=9)
    _finish(plt, fig, path, "Firing of digit-specific neurons during a random-input sleep (Fig. 6)")


def _plot_confusion(plt, conf: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.4))
    for ax, when in zip(axes, ("before", "after")):
        _annotated(ax, conf[when], conf["labels"], DIGITS, ".0f")
        ax.set_xlabel("prediction")
        ax.set_ylabel("actual")
        ax.set_title(f"{when} SRC", fontsize=9)
    _finish(plt, fig, path)


def _plot_weights(plt, before: list[torch.Tensor], after: list[torch.Tensor], path: Path) -> None:
    fig, axes = plt.subplots(len(before), 2, figsize=(7.6, 2.6 * len(before)), squeeze=False)
    for layer, (w0, w1) in enumerate(zip(before, after)):
        d = (w1 - w0).flatten().numpy()
        w0 = w0.flatten().numpy()
        changed = d != 0
        ax = axes[layer][0]
        ax.hist(d[changed], bins=80, color="grey")
        ax.set_yscale("log")
        ax.set_title(f"layer {layer + 1}: change of the {changed.sum():,} changed weights "
                     f"({changed.mean():.1%})", fontsize=8)
        ax = axes[layer][1]
        bins = np.linspace(w0.min(), w0.max(), 60)
        ax.hist(w0[d > 0], bins=bins, alpha=0.6, label=f"increased ({(d > 0).sum():,})")
        ax.hist(w0[d < 0], bins=bins, alpha=0.6, label=f"decreased ({(d < 0).sum():,})")
        ax.set_yscale("log")
        ax.set_title(f"layer {layer + 1}: weights before SRC, by the sign of their change", fontsize=8)
        ax.legend(fontsize=7)
    _finish(plt, fig, path)
