"""Learning curves by words seen: every finished run's word-count checkpoints (`RUN_DIR/chck_*`, written with
`checkpoint.words=[...]`), its pre-end-ops model and its final model, each scored on the test-split loss (the
measure of the run's own `final_test_loss`: packed test blocks, the first `train.eval_max_batches`) and on
BLiMP-style minimal pairs (the first `max_pairs` of each paradigm: a fixed subset, the same for every point).

Each point's scores are stored beside its folder (`FOLDER/eval/milestone.json`) and reused, so scoring an
experiment again only scores what is new. `compare` scores after its runs; `sleeptrain report` reads what is there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sleeptrain.lm.metrics_log import read_metrics

MILESTONE_PAIRS = 200  # minimal pairs per paradigm at a milestone (the final model's full score is in final/eval)


def milestone_words(name: str) -> int | None:
    """`chck_1M` -> 1,000,000, `chck_300K` -> 300,000, `chck_1234` -> 1234 (`lm.words.milestone_name` backwards)."""
    found = re.fullmatch(r"chck_(\d+)([MK]?)", name)
    if not found:
        return None
    return int(found.group(1)) * {"M": 1_000_000, "K": 1_000, "": 1}[found.group(2)]


def points(run_dir: Path) -> list[dict]:
    """The run's curve points in order of words seen: each milestone folder, the pre-end-ops model, the final
    model, with the words seen and the optimizer step (from metrics.jsonl) at each."""
    records = read_metrics(run_dir / "metrics.jsonl")
    trains = [(r["words_seen"], r["step"]) for r in records if r.get("event") == "train" and "words_seen" in r]
    logged = {Path(r["dir"]).name: r for r in records if r.get("event") == "milestone"}
    out = []
    for folder in run_dir.glob("chck_*"):
        words = milestone_words(folder.name)
        if words is None or not (folder / "config.json").is_file():
            continue
        # a milestone logged before a resume's rewind has no record: the first training record past its words
        step = logged.get(folder.name, {}).get("step") or next((s for w, s in trains if w >= words), None)
        out.append({"point": folder.name, "words": words, "step": step, "dir": folder})
    summary = json.loads((run_dir / "summary.json").read_text())
    pre = summary.get("pre_end_ops")
    if pre and pre.get("dir") and (Path(pre["dir"]) / "config.json").is_file():
        out.append({"point": "pre_end_ops", "words": summary.get("words_seen"), "step": pre["step"],
                    "dir": Path(pre["dir"])})
    out.append({"point": "final", "words": summary.get("words_seen"), "step": summary["steps"],
                "dir": run_dir / "final"})
    return sorted(out, key=lambda p: (p["words"] or 0, p["point"] == "final"))


def score_run(run_dir: Path, max_pairs: int = MILESTONE_PAIRS) -> list[dict]:
    """Every curve point of a finished run with its scores (computed where `eval/milestone.json` is missing)."""
    from sleeptrain.presets import config_from_yaml

    cfg = config_from_yaml((run_dir / "config.yaml").read_text())
    found = points(run_dir)
    todo = [p for p in found if not (p["dir"] / "eval" / "milestone.json").is_file()]
    if todo:
        data, pairs = run_inputs(cfg, run_dir, max_pairs)
        for point in todo:
            score_point(point["dir"], cfg, data, pairs, max_pairs)
    positions_per_step = cfg.train.batch_size * cfg.data.seq_len
    out = []
    for point in found:
        scores = json.loads((point["dir"] / "eval" / "milestone.json").read_text())
        out.append({"point": point["point"], "words": point["words"],
                    "positions": point["step"] * positions_per_step if point["step"] is not None else None,
                    **{k: scores.get(k) for k in ("test_loss", "blimp", "pairs")}})
    return out


def run_inputs(cfg, run_dir: Path, max_pairs: int):
    """The run's data (for its test split) and its minimal pairs (the generated ones, or `eval.blimp_path`)."""
    from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs
    from sleeptrain.lm.run_setup import load_run_data

    data = load_run_data(cfg)
    source = Path(cfg.eval.blimp_path) if cfg.eval.blimp_path else run_dir / "minimal_pairs"
    pairs = load_minimal_pairs(source, max_pairs) if source.is_dir() else None
    return data, pairs


def score_point(folder: Path, cfg, data, pairs, max_pairs: int) -> None:
    """Test loss and minimal-pair accuracy of one model folder, written to `folder/eval/milestone.json`."""
    import torch

    from sleeptrain.evaluate.blimp import evaluate_pairs
    from sleeptrain.evaluate.harness import load_model_folder
    from sleeptrain.fsutil import atomic_write_text
    from sleeptrain.lm.validation import validation_loss

    loaded = load_model_folder(folder, "cpu" if cfg.train.device == "cpu" else "auto")
    out = {"model": str(folder), "test_loss": None, "blimp": None, "pairs": None, "max_pairs_per_paradigm": max_pairs}
    with torch.no_grad():
        if data.test_samples is not None:
            out["test_loss"] = validation_loss(
                loaded.model, data.test_samples, data.tokenizer, masked=loaded.masked,
                batch_size=cfg.train.micro_batch_size or cfg.train.batch_size,
                device=next(loaded.model.parameters()).device, max_batches=cfg.train.eval_max_batches,
                mlm_probability=cfg.model.mlm_probability, seed=cfg.seed)["val_loss"]
        if pairs:
            blimp, _, _ = evaluate_pairs(loaded.model, loaded.tokenizer, pairs, loaded.masked, cfg.eval.batch_size,
                                         cfg.eval.method)
            out["blimp"], out["pairs"] = blimp["overall"], blimp["pairs"]
    atomic_write_text(folder / "eval" / "milestone.json", json.dumps(out, indent=1))


def read_curves(exp_dir: Path, arms: list[str]) -> tuple[dict[str, dict[int, list[dict]]], list[str]]:
    """arm -> seed -> the scored curve of each finished run (nothing is computed here), and the runs whose
    checkpoints are not all scored yet (`compare` scores them when it runs again)."""
    out: dict[str, dict[int, list[dict]]] = {}
    unscored: list[str] = []
    for arm in arms:
        for run_dir in sorted((exp_dir / "runs" / arm).glob("seed*")):
            if not re.fullmatch(r"seed\d+", run_dir.name) or not (run_dir / "summary.json").is_file():
                continue
            found = points(run_dir)
            if not any(p["point"].startswith("chck_") for p in found):
                continue
            if all((p["dir"] / "eval" / "milestone.json").is_file() for p in found):
                out.setdefault(arm, {})[int(run_dir.name.removeprefix("seed"))] = score_run(run_dir)
            else:
                unscored.append(f"{arm}/{run_dir.name}")
    return out, unscored


def aggregate(curves: dict[str, list[list[dict]]]) -> dict[str, list[dict]]:
    """arm -> per point (in order): mean words / positions and mean ± sd of test loss and BLiMP over the seeds that
    have the point."""
    from sleeptrain.stats import mean_sd

    out = {}
    for arm, runs in curves.items():
        names = [p["point"] for p in runs[0]]
        rows = []
        for name in names:
            at = [p for run in runs for p in run if p["point"] == name]
            rows.append({"point": name, "words": mean_sd([p["words"] for p in at])["mean"],
                         "positions": mean_sd([p["positions"] for p in at])["mean"],
                         "test_loss": mean_sd([p["test_loss"] for p in at]),
                         "blimp": mean_sd([p["blimp"] for p in at])})
        out[arm] = rows
    return out


def plot_curves(curves: dict[str, list[dict]], arms: list[str], out: Path) -> Path:
    """curves.png: BLiMP and test loss (mean ± sd over seeds) against words seen (top) and token positions
    (bottom), a line per arm; the pre-end-ops point drawn hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=100)
    for row, (xkey, xlabel) in enumerate((("words", "words seen"), ("positions", "token positions (replay included)"))):
        for col, (ykey, ylabel) in enumerate((("blimp", "minimal-pair accuracy"), ("test_loss", "test loss"))):
            ax = axes[row][col]
            for arm in arms:
                pts = [p for p in curves.get(arm, []) if p[ykey]["mean"] is not None and p[xkey] is not None]
                if not pts:
                    continue
                color = colors[arms.index(arm) % len(colors)]
                line = [p for p in pts if p["point"] != "pre_end_ops"]
                x = np.array([p[xkey] for p in line])
                y = np.array([p[ykey]["mean"] for p in line])
                sd = np.array([p[ykey]["sd"] or 0.0 for p in line])
                n = max(p[ykey]["n"] for p in line)
                ax.plot(x, y, color=color, marker="o", ms=3, lw=1.4, label=f"{arm} ({n} seed{'s' * (n > 1)})")
                ax.fill_between(x, y - sd, y + sd, color=color, alpha=0.2, lw=0)
                for p in pts:
                    if p["point"] == "pre_end_ops":
                        ax.plot(p[xkey], p[ykey]["mean"], marker="o", ms=6, mfc="none", color=color)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle("learning curves: mean ± 1 sd over seeds; hollow: before the last sleep's end ops", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def point_order(names: list[str]) -> list[str]:
    """The milestones by words, then the model before the last end ops and the final model (the names present)."""
    return sorted({n for n in names if n.startswith("chck_")}, key=milestone_words) + \
        [n for n in ("pre_end_ops", "final") if n in names]


def milestone_table(curves: dict[str, list[dict]], arms: list[str]) -> list[str]:
    """Per point: each arm's BLiMP / test loss (mean ± sd) and which arm is ahead on each. The milestones first, by
    words; then the model before the last end ops and the final model, whose words differ by arm (in the cells)."""
    names = []
    for arm in arms:
        names += [p["point"] for p in curves.get(arm, []) if p["point"] not in names]
    names = point_order(names)
    lines = ["| point | words | " + " | ".join(arms) + " | ahead (BLiMP / test loss) |",
             "|---|---|" + "---|" * len(arms) + "---|"]
    for name in names:
        at = {arm: next((p for p in curves.get(arm, []) if p["point"] == name), None) for arm in arms}
        cells, blimp, loss = [], {}, {}
        for arm in arms:
            p = at[arm]
            if p is None:
                cells.append("—")
                continue
            b, t = p["blimp"], p["test_loss"]
            cell = " / ".join("—" if m["mean"] is None else f"{m['mean']:.3f} ± {m['sd']:.3f}" for m in (b, t))
            at_words = f" @ {p['words']:,.0f} words" if not name.startswith("chck_") and p["words"] else ""
            cells.append(cell + at_words)
            if b["mean"] is not None:
                blimp[arm] = b["mean"]
            if t["mean"] is not None:
                loss[arm] = t["mean"]
        words = milestone_words(name) if name.startswith("chck_") else None
        ahead = f"{leader(blimp, max)} / {leader(loss, min)}"
        lines.append(f"| {name} | {'—' if words is None else f'{words:,.0f}'} | " + " | ".join(cells) + f" | {ahead} |")
    return lines


def leader(values: dict[str, float], best) -> str:
    """The arm with the best value, "tie" when two share it, "—" with none."""
    if not values:
        return "—"
    top = best(values.values())
    winners = [arm for arm, v in values.items() if abs(v - top) < 1e-12]
    return winners[0] if len(winners) == 1 else "tie"
