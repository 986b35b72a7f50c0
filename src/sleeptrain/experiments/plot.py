"""The plots of an experiment's arms (loss mean ± sd over seeds per arm, BLiMP by phenomenon); a run's own loss
plot is `sleeptrain.lm.loss_plot`."""

from __future__ import annotations

import math
from pathlib import Path

from sleeptrain.lm.loss_plot import sleep_spans
from sleeptrain.lm.metrics_log import read_metrics


def run_curve(run_dir: Path, points: int | None = None) -> dict:
    """One run's curves as plain lists: "train" [[tokens, loss], ...] (thinned to about `points` evenly spaced
    records when given, the last always kept), "eval" [[step, tokens, val_loss], ...], "sleep" [[start, end], ...]
    in tokens. Small enough to keep beside a study's results when the run folder is gone."""
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [[r["tokens"], r["loss"]] for r in records if r.get("event") == "train" and r.get("loss") is not None]
    if points and len(train) > points:
        stride = math.ceil(len(train) / points)
        train = train[::stride] + ([train[-1]] if (len(train) - 1) % stride else [])
    evals = [[r["step"], r["tokens"], r["val_loss"]] for r in records
             if r.get("event") == "eval" and r.get("val_loss") is not None and r.get("step")]
    return {"train": train, "eval": evals, "sleep": [list(span) for span in sleep_spans(records)]}


def plot_arms(curves: dict[str, list[dict]], phenomena: dict[str, dict[str, list[float]]], arms: list[str],
              out_dir: Path) -> list[Path]:
    """loss.png: a panel per arm with curves (`run_curve` dicts, one per finished seed): training loss mean ± sd over
    the seeds, validation loss at each evaluation step (mean over the seeds that reached it), the first seed's sleep
    phases shaded. blimp_by_phenomenon.png: accuracy per phenomenon (mean of the per-seed values given), a bar per
    arm — written when any phenomena are given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shown = [arm for arm in arms if curves.get(arm)] or arms[:1]  # a panel per arm with finished runs
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.6 * len(shown)), dpi=100, sharex=True, sharey=True,
                             squeeze=False)
    for i, arm in enumerate(shown):
        _arm_panel(axes[i][0], arm, curves.get(arm, []), colors[arms.index(arm) % len(colors)])
    axes[-1][0].set_xlabel("tokens seen (replay included); shaded: sleep phases (first seed)")
    fig.tight_layout()
    paths = [Path(out_dir) / "loss.png"]
    fig.savefig(paths[0])
    plt.close(fig)
    if phenomena:
        names = sorted({p for v in phenomena.values() for p in v})
        fig, ax = plt.subplots(figsize=(min(14, 3 + 0.12 * len(names) * len(arms)), 4.5), dpi=100)
        width = 0.8 / len(arms)
        for i, arm in enumerate(arms):
            vals = [np.mean(phenomena.get(arm, {}).get(p, [math.nan])) for p in names]
            ax.bar(np.arange(len(names)) + i * width, vals, width, label=arm, color=colors[i % len(colors)])
        ax.axhline(0.5, color="gray", lw=0.8, ls=":")
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("accuracy (mean over seeds)")
        ax.set_title("minimal pairs by phenomenon")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(Path(out_dir) / "blimp_by_phenomenon.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def _arm_panel(ax, arm: str, runs: list[dict], color) -> None:
    """One arm's panel of loss.png: training loss mean ± sd over its seeds, validation mean, sleeps shaded."""
    import numpy as np

    train = [(np.array([t for t, _ in c["train"]]), np.array([x for _, x in c["train"]])) for c in runs if c["train"]]
    evals: dict[int, list] = {}
    for c in runs:
        for step, tokens, val in c["eval"]:
            evals.setdefault(step, []).append((tokens, val))
    for a, b in next((c["sleep"] for c in runs), []):
        ax.axvspan(a, b, color=color, alpha=0.12, lw=0)
    if train:
        grid = np.linspace(max(x[0] for x, _ in train), min(x[-1] for x, _ in train), 200)
        ys = np.stack([np.interp(grid, x, y) for x, y in train])
        mean, sd = ys.mean(0), ys.std(0)
        ax.plot(grid, mean, color=color, lw=1.4, label=f"{arm}: train, mean of {len(train)} seeds")
        ax.fill_between(grid, mean - sd, mean + sd, color=color, alpha=0.25, lw=0, label="± 1 sd")
    if evals:
        pts = sorted((np.mean([t for t, _ in v]), np.mean([x for _, x in v])) for v in evals.values())
        ax.plot([t for t, _ in pts], [x for _, x in pts], color="black", lw=1, ls="--", marker="o", ms=3,
                label="validation (mean)")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if train or evals:  # an arm with no finished run yet has nothing to label
        ax.legend(fontsize=7, loc="upper right")
