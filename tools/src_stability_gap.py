"""Continual evaluation of SRC on a split benchmark: does its sleep close a gap that opens *during* training?

    .venv/bin/python tools/src_stability_gap.py --out experiments/src --results docs/results/src --seeds 5 \
        --eval-every 2 data_path=../shared/data/mnist

Runs sequential, src, rehearsal and rehearsal_src with `eval_every=K` (one `sleeptrain continual` run each in
OUT/<benchmark>-gap-k<K>-<method>/, skipped when its results.json exists) and writes RESULTS/<benchmark>-gap.json /
.md / .png: per method final ACC, min-ACC and WC-ACC (De Lange et al. 2023; continual/curve.py) as mean ± sd over
seeds, each earlier task's mean gap, paired tests against sequential and against src (Holm within each family),
and a figure of the first seed's accuracy on task 1 through the run, one panel per method, sleeps dotted.
Extra `key=value` words go to every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tools"))

from sleeptrain.experiments.paired import adjust_family, paired_comparison  # noqa: E402
from sleeptrain.stats import mean_sd  # noqa: E402
from src_table import run  # noqa: E402

METHODS = ("sequential", "src", "rehearsal", "rehearsal_src")
METRICS = ("average_accuracy", "min_acc", "wc_acc")


def summarise(runs: dict) -> dict:
    rows = {}
    for m, r in runs.items():
        per_seed = {k: [s[k] for s in r["per_seed"]] for k in METRICS}
        gaps = [s["gap"] for s in r["per_seed"]]
        rows[m] = {**{k: mean_sd(v) for k, v in per_seed.items()}, "per_seed": per_seed,
                   "gap_by_task": [mean_sd([g[k] for g in gaps]) for k in range(len(gaps[0]))]}
    for ref in ("sequential", "src"):
        for metric in ("min_acc", "wc_acc"):
            family = []
            for m, row in rows.items():
                if m != ref and ref in rows:
                    cmp = paired_comparison(row["per_seed"][metric], rows[ref]["per_seed"][metric], True)
                    row.setdefault(f"vs_{ref}", {})[metric] = cmp
                    family.append(cmp)
            adjust_family(family)
    return rows


def plot(runs: dict, path: Path, every: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 3.0), sharey=True, dpi=110)
    for ax, (m, r) in zip(axes, runs.items()):
        curve = r["per_seed"][0]["curve"]
        for k in range(min(3, len(r["tasks"]))):
            pts = [p for p in curve if len(p["accuracy"]) > k]
            ax.plot([p["iteration"] for p in pts], [p["accuracy"][k] for p in pts], lw=1, label=f"t{k + 1}")
        for p in curve:
            if p["kind"] == "after_sleep":
                ax.axvline(p["iteration"], color="0.6", ls=":", lw=0.7)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel(f"SGD iterations (every {every})", fontsize=8)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="split_mnist")
    parser.add_argument("--out", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()
    out, results = Path(args.out), Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    words = [f"eval_every={args.eval_every}", *args.extra]
    runs = {m: run(args.benchmark, m, args.seeds, out, words, tag=f"gap-k{args.eval_every}")
            for m in args.methods.split(",")}
    rows = summarise(runs)
    command = (f"tools/src_stability_gap.py --benchmark {args.benchmark} --seeds {args.seeds} --eval-every "
               f"{args.eval_every} --methods {args.methods} " + " ".join(args.extra)).strip()
    results.mkdir(parents=True, exist_ok=True)
    name = f"{args.benchmark}-gap"
    (results / f"{name}.json").write_text(json.dumps({"command": command, "methods": rows}, indent=1))
    plot(runs, results / f"{name}.png", args.eval_every)
    cell = lambda v: f"{v['mean']:.3f} ± {v['sd']:.3f}"  # noqa: E731
    lines = [f"# {args.benchmark}: continual evaluation every {args.eval_every} SGD iterations ({args.seeds} seeds)",
             "", f"Command: `{command}`", "",
             "| method | ACC | min-ACC | WC-ACC | gap per earlier task (mean) | min-ACC − sequential (Holm p, MDE) | "
             "min-ACC − src (Holm p, MDE) |", "|---|---|---|---|---|---|---|"]
    for m, row in rows.items():
        gaps = ", ".join(f"{g['mean']:.2f}" for g in row["gap_by_task"])
        vs = {ref: row.get(f"vs_{ref}", {}).get("min_acc") for ref in ("sequential", "src")}
        text = {ref: "—" if not c or "mean_diff" not in c else
                f"{c['mean_diff']:+.3f} (p {c['p_holm']:.3g}, MDE {c['mde_family']:.3f})" if c.get("p_holm") is not None
                else f"{c['mean_diff']:+.3f}"
                for ref, c in vs.items()}
        lines.append(f"| {m} | {cell(row['average_accuracy'])} | {cell(row['min_acc'])} | {cell(row['wc_acc'])} | "
                     f"{gaps} | {text['sequential']} | {text['src']} |")
    (results / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
