"""A run's own loss plot (`RUN_DIR/loss.png`, `sleeptrain plot`): training and validation loss against tokens
seen, sleep phases shaded, runs overlaid. In lm/ because the run writes it; experiments/ draws the plots of arms."""

from __future__ import annotations

import json
from pathlib import Path

from sleeptrain.errors import DataError
from sleeptrain.lm.metrics_log import read_metrics


def run_label(run_dir: Path) -> str:
    """The schedule preset and model of a run, e.g. 'sleep_strict / tiny', else the folder name."""
    try:
        presets = json.loads((run_dir / "run.json").read_text()).get("presets", {})
        if presets:
            return f"{presets.get('schedule', '?')} / {presets.get('model', '?')} ({run_dir.name})"
    except (OSError, ValueError):
        pass
    return run_dir.name


def sleep_spans(records: list[dict]) -> list[tuple[float, float]]:
    """(tokens at sleep start, tokens at sleep end) for every sleep phase with replay steps."""
    spans, start = [], None
    last_tokens = 0
    for r in records:
        if r.get("event") == "train":
            last_tokens = r["tokens"]
        elif r.get("event") == "sleep_start":
            start = r.get("tokens", last_tokens)
        elif r.get("event") == "sleep_end" and start is not None:
            end = r.get("tokens", last_tokens)
            if end > start:
                spans.append((start, end))
            start = None
    return spans


def plot_runs(run_dirs: list[str | Path], out: str | Path, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run_dir in enumerate(map(Path, run_dirs)):
        metrics_file = run_dir / "metrics.jsonl"
        if not metrics_file.is_file():
            raise DataError(f"{run_dir}: no metrics.jsonl (is it a sleeptrain run folder?)")
        records = read_metrics(metrics_file)
        color = colors[i % len(colors)]
        label = run_label(run_dir)
        train = [r for r in records if r.get("event") == "train"]
        evals = [r for r in records if r.get("event") == "eval"]
        for j, (a, b) in enumerate(sleep_spans(records)):
            ax.axvspan(a, b, color=color, alpha=0.12, lw=0, label=f"sleep ({label})" if j == 0 else None)
        if train:
            ax.plot([r["tokens"] for r in train], [r["loss"] for r in train], color=color, lw=1.2, alpha=0.8,
                    label=f"train {label}")
        if evals:
            ax.plot([r["tokens"] for r in evals], [r["val_loss"] for r in evals], color=color, lw=2, ls="--",
                    marker="o", ms=3, label=f"val {label}")
    ax.set_xlabel("tokens seen (replay included)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or "training and validation loss; shaded: sleep phases")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
