"""Plots of `sleeptrain continual`: the accuracy matrix (the paper's Fig. 2), accuracy against overlap (Fig. 1B)
and the input to T1's and T2's output neurons for a T1 image (Fig. 1C)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_split(results: dict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(results["accuracy_matrix"]["mean"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * matrix.shape[1], 0.9 + 0.45 * matrix.shape[0]), dpi=110)
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), results["tasks"])
    ax.set_yticks(range(matrix.shape[0]), results["stages"])
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] < 0.6 else "black")
    ax.set_xlabel("task")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def plot_patches(results: dict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overlaps = [int(k) for k in results["by_overlap"]]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for key, label in (("after_t1", "after T1"), ("after_t2", "after T2"), ("after_sleep", "after SRC")):
        values = [results["by_overlap"][str(o)].get(key) for o in overlaps]
        if any(v is not None for v in values):
            sds = [results["by_overlap"][str(o)]["sd"].get(key, 0) for o in overlaps]
            ax.errorbar(overlaps, values, yerr=sds, marker="o", capsize=3, label=label)
    ax.set_xlabel("overlapping pixels")
    ax.set_ylabel("accuracy on all four images")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def plot_fig1c(results: dict, out: Path, title: str) -> None:
    """Bars per overlap and stage: input to T1's neuron 0 (black) and the larger of T2's neurons (red) for image 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overlaps = [o for o, v in results["by_overlap"].items() if v.get("fig1c")]
    overlaps = [o for o in overlaps if int(o) >= 10] or overlaps  # the paper's panels: where forgetting starts
    if not overlaps:
        return
    stages = ("after_t1", "after_t2", "after_sleep")
    fig, axes = plt.subplots(1, len(overlaps), figsize=(1.6 * len(overlaps) + 1, 3.2), dpi=110, sharey=True,
                             squeeze=False)
    for ax, overlap in zip(axes[0], overlaps):
        data = results["by_overlap"][overlap]["fig1c"]
        present = [s for s in stages if s in data]
        x = np.arange(len(present))
        for offset, key, color in ((-0.2, "t1_neuron0", "k"), (0.2, "t2_max", "tab:red")):
            ax.bar(x + offset, [data[s][key]["mean"] for s in present], 0.4, color=color,
                   yerr=[data[s][key]["sd"] for s in present], capsize=2)
        ax.set_xticks(x, [s.removeprefix("after_").replace("sleep", "SRC").upper() for s in present], fontsize=7)
        ax.set_title(f"overlap {overlap}", fontsize=8)
        ax.axhline(0, color="grey", lw=0.5)
    axes[0][0].set_ylabel("input when T1 image 0 is shown")
    fig.suptitle(f"{title}: T1 neuron 0 (black) vs max T2 neuron (red)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def plot_curve(points: list[dict], out: Path, title: str, n_tasks: int) -> None:
    """Continual evaluation (one seed): accuracy on each task against SGD iterations, from the iteration it starts
    training; sleeps as vertical dotted lines, each sleep's result as a marker (its drop or recovery in place)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k in range(n_tasks):
        mine = [p for p in points if len(p["accuracy"]) > k]
        ax.plot([p["iteration"] for p in mine], [p["accuracy"][k] for p in mine], lw=1.1,
                color=colors[k % len(colors)], label=f"t{k + 1}")
        slept = [p for p in mine if p["kind"] == "after_sleep"]
        ax.scatter([p["iteration"] for p in slept], [p["accuracy"][k] for p in slept], s=14, marker="o",
                   color=colors[k % len(colors)], zorder=3)
    for p in points:
        if p["kind"] == "after_sleep":
            ax.axvline(p["iteration"], color="0.5", ls=":", lw=0.8)
    ax.set_xlabel("SGD iterations (dotted: a sleep; dots: accuracy after it)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=min(n_tasks, 5), loc="lower left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
