"""FORGETTER against its tuned "normal" baseline, seeds paired (issue 16): one resumable command.

    .venv/bin/python tools/forgetter_study.py --out experiments/forgetter --results docs/results/forgetter \\
        --normal-steps 300,600,1200 --forgetter-steps 300 --max-epochs 12 --seeds 3 \\
        data=babylm data.path=../shared/data/corpus-mini model=mingemma-cpu ...

Arms: `schedule=forgetter_normal` at every length in --normal-steps (one LR decay from the peak to 0 over that many
steps of random windows), and `schedule=forgetter` with --forgetter-steps per epoch and the controller (at most
--max-epochs epochs); every arm x every seed. Extra `key=value` words are common to all runs. Each run has its own
folder under --out: a finished run is skipped, an interrupted one resumed from its newest checkpoint, so re-running
the command continues the study. Then --results gets `summary.json` (the layout of issue 16), `loss.png` (validation
loss against tokens, both arms, the paper's Fig. 3 shape) and `report.md` (best normal length vs FORGETTER, paired
by seed: difference, 95 % bootstrap CI, paired t-test), plus BLiMP of the best run of each arm when --blimp is given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sleeptrain.experiments.paired import paired_comparison  # noqa: E402
from sleeptrain.lm.checkpoint import latest_checkpoint  # noqa: E402
from sleeptrain.lm.metrics_log import read_metrics  # noqa: E402
from sleeptrain.stats import mean_sd  # noqa: E402


def cli(*args: str, log: Path) -> None:
    with open(log, "a") as fh:
        subprocess.run([sys.executable, "-m", "sleeptrain", *args], stdout=fh, stderr=subprocess.STDOUT, check=True)


def ensure_run(run_dir: Path, args: list[str]) -> None:
    """Finished: skip; checkpointed: resume; anything else: start (again)."""
    if (run_dir / "summary.json").is_file():
        return
    log = run_dir.with_suffix(".log")
    start = time.time()
    if latest_checkpoint(run_dir) is not None:
        cli("train", f"resume={run_dir}", log=log)
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        cli("train", *args, f"run.dir={run_dir}", log=log)
    print(f"{run_dir.name}: {time.time() - start:.0f} s", flush=True)


def evals(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "eval"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder of the runs")
    parser.add_argument("--results", required=True, help="folder for summary.json, loss.png, report.md")
    parser.add_argument("--normal-steps", required=True, help="comma-separated lengths of the normal run")
    parser.add_argument("--forgetter-steps", type=int, required=True, help="steps per FORGETTER epoch")
    parser.add_argument("--max-epochs", type=int, default=100, help="FORGETTER's epoch ceiling (default 100)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--blimp", default=None, help="BLiMP folder: score the best run of each arm")
    parser.add_argument("--blimp-max-pairs", type=int, default=None, help="pairs per paradigm (default: all)")
    parser.add_argument("common", nargs="*", help="key=value words common to every run")
    args = parser.parse_args()
    out, results = Path(args.out), Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    lengths = [int(x) for x in args.normal_steps.split(",")]
    seeds = list(range(args.seeds))
    common = [*args.common, "run.progress=false", "run.plot=false", "eval.final=false"]
    for seed in seeds:  # seed-major: a partial study already pairs every arm
        for n in lengths:
            ensure_run(out / f"normal-{n}-s{seed}", ["schedule=forgetter_normal", f"schedule.steps_per_epoch={n}",
                                                     f"seed={seed}", *common])
        ensure_run(out / f"forgetter-s{seed}", ["schedule=forgetter", f"schedule.steps_per_epoch={args.forgetter_steps}",
                                               f"schedule.epochs={args.max_epochs}", f"seed={seed}", *common])

    normal_final = [[json.loads((out / f"normal-{n}-s{s}" / "summary.json").read_text())["final_val_loss"]
                     for s in seeds] for n in lengths]
    best_i = min(range(len(lengths)), key=lambda i: sum(normal_final[i]) / len(seeds))
    f_runs = [out / f"forgetter-s{s}" for s in seeds]
    f_best = [json.loads((r / "summary.json").read_text())["final_val_loss"] for r in f_runs]
    f_by_epoch = [[c["val_loss"] for c in read_metrics(r / "metrics.jsonl") if c["event"] == "controller"
                   and "mode" in c] for r in f_runs]
    f_epochs = [len([e for e in read_metrics(r / "metrics.jsonl") if e["event"] == "epoch_start"]) for r in f_runs]
    cfg_text = (out / "forgetter-s0" / "config.yaml").read_text()
    start = next(r for r in read_metrics(f_runs[0] / "metrics.jsonl") if r["event"] == "start")
    comparison = paired_comparison(f_best, normal_final[best_i], higher_is_better=False)
    summary = {
        "normal": {"steps": lengths, "val_loss": normal_final, "best_steps": lengths[best_i]},
        "forgetter": {"steps_per_epoch": args.forgetter_steps, "max_epochs": args.max_epochs,
                      "best_val_loss": f_best, "val_loss_by_epoch": f_by_epoch, "epochs_trained": f_epochs},
        "comparison": {"forgetter_minus_best_normal": comparison, "best_normal": mean_sd(normal_final[best_i]),
                       "forgetter": mean_sd(f_best)},
        "data": start["corpus"], "train_tokens_on_tape": start["train_tokens"],
        "model": {"parameters": start["parameters"], "non_embedding": start["non_embedding_parameters"]},
        "tokens": {"normal": [json.loads((out / f"normal-{n}-s0" / "summary.json").read_text())["tokens"]
                              for n in lengths],
                   "forgetter": [json.loads((r / "summary.json").read_text())["tokens"] for r in f_runs]},
        "config_of_forgetter_seed0": cfg_text, "command": " ".join(sys.argv),
        "paper_baby10m": {"normal": 3.0457, "forgetter": 3.0053},
    }
    if args.blimp:
        best_normal_run = out / f"normal-{lengths[best_i]}-s{min(seeds, key=lambda s: normal_final[best_i][s])}"
        best_f_run = f_runs[min(seeds, key=lambda s: f_best[s])]
        summary["blimp"] = {}
        for arm, run in (("normal", best_normal_run), ("forgetter", best_f_run)):
            extra = [f"blimp.max_pairs={args.blimp_max_pairs}"] if args.blimp_max_pairs else []
            cli("eval", str(run / "final"), f"blimp.path={args.blimp}", "perplexity.enabled=false", *extra,
                log=run.with_suffix(".eval.log"))
            blimp = json.loads((run / "final" / "eval" / "results.json").read_text())["blimp"]
            summary["blimp"][arm] = {"run": run.name, "overall": blimp["overall"]}
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(out, lengths, best_i, seeds, f_runs, results / "loss.png")
    (results / "report.md").write_text(report(summary))
    print(report(summary))
    return 0


def plot(out: Path, lengths, best_i, seeds, f_runs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, n in enumerate(lengths):
        for s in seeds:
            e = evals(out / f"normal-{n}-s{s}")[-1]
            ax.scatter(e["tokens"], e["val_loss"], color="tab:blue", alpha=0.9 if i == best_i else 0.35,
                       label=f"normal (final, {n} steps)" if s == 0 else None, marker="os^v<>"[i % 6])
    for s, run in enumerate(f_runs):
        points = [(c["tokens"], c["val_loss"]) for c in read_metrics(run / "metrics.jsonl")
                  if c["event"] == "eval" and c["step"] > 0]
        ax.plot(*zip(*points), color="tab:red", alpha=0.7, marker=".", label="FORGETTER" if s == 0 else None)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("validation loss")
    ax.set_title("FORGETTER vs normal training (each normal point: one run of that length)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(summary: dict) -> str:
    c, n, f = summary["comparison"], summary["normal"], summary["forgetter"]
    d = c["forgetter_minus_best_normal"]
    rows = "\n".join(f"| normal, {steps} steps | {mean_sd(v)['mean']:.4f} ± {mean_sd(v)['sd']:.4f} |"
                     for steps, v in zip(n["steps"], n["val_loss"]))
    text = f"""# FORGETTER vs a tuned normal baseline

Command: `{summary['command']}`

| arm | final validation loss (mean ± sd over seeds) |
|---|---|
{rows}
| FORGETTER, {f['steps_per_epoch']} steps per epoch, controller | {c['forgetter']['mean']:.4f} ± {c['forgetter']['sd']:.4f} (epochs trained: {f['epochs_trained']}) |

FORGETTER minus the best normal length ({n['best_steps']} steps), paired by seed: {json.dumps(d)}

Paper (Baby10M, minGemma at paper scale): normal 3.0457 -> FORGETTER 3.0053.
"""
    if "blimp" in summary:
        text += "\nBLiMP of the best run of each arm: " + json.dumps(summary["blimp"]) + "\n"
    return text


if __name__ == "__main__":
    raise SystemExit(main())
