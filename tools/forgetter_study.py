"""FORGETTER against its tuned "normal" baseline, seeds paired (issues 16, 37): one resumable command.

    .venv/bin/python tools/forgetter_study.py --out experiments/forgetter --results docs/results/forgetter-2x \\
        --normal-steps 250,400,650 --forgetter-steps 240 --max-epochs 10 --seeds 3 \\
        data=babylm data.path=../shared/data/corpus-mini model=mingemma-cpu train.precision=fp32 ...

Arms: `schedule=forgetter_normal` at every length in --normal-steps (one LR decay from the peak to 0 over that many
steps of random windows), and `schedule=forgetter` with --forgetter-steps per epoch and the controller (at most
--max-epochs epochs); every arm x every seed. Extra `key=value` words are common to all runs.

**Select on dev, judge on test.** Everything that chooses reads the dev split only: the best normal length (lowest
mean final dev loss) and FORGETTER's controller (its epochs, deep sleeps, stop and best weights). The verdict is on
the test split, which nothing chose on: each run's final model scored on the first `train.eval_max_batches` test
batches (`final_test_loss`), FORGETTER paired by seed with the normal runs of the length dev chose. The dev-side
difference is reported beside it, labelled as the selection split's.

**Records.** Each run has its own folder under --out (not committed): a finished run is skipped, an interrupted one
resumed from its newest checkpoint. As a run finishes, a small record (its summary, evaluations, controller
decisions, config) goes to RESULTS/records/<run>.json — commit them: a re-run skips every run with a record, so a
fresh clone (or the next session) continues the study from the records, and the report is written from them alone.
Then RESULTS gets `summary.json`, `loss.png` (dev loss against tokens, the paper's Fig. 3 shape) and `report.md`.
`--beside SUMMARY` puts an earlier study's paired difference (e.g. the 57k-token one, docs/results/forgetter) and its
training-tape size in the report, to read how the difference moves as the data grows; `--link-back` also records this
study's headline (tape, lengths, choice, both paired differences) in that earlier summary, under
`at_more_data.<RESULTS>`, so the earlier study's file lists the studies that grew it (re-running replaces only its own
entry, and says so).
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

from sleeptrain.errors import DataError  # noqa: E402
from sleeptrain.experiments.paired import paired_comparison, table_cells  # noqa: E402
from sleeptrain.lm.checkpoint import latest_checkpoint  # noqa: E402
from sleeptrain.lm.metrics_log import read_metrics  # noqa: E402
from sleeptrain.stats import mean_sd  # noqa: E402


def cli(*args: str, log: Path) -> None:
    with open(log, "a") as fh:
        subprocess.run([sys.executable, "-m", "sleeptrain", *args], stdout=fh, stderr=subprocess.STDOUT, check=True)


def run_record(run_dir: Path) -> dict:
    """What the report needs of a finished run, small enough to commit."""
    metrics = read_metrics(run_dir / "metrics.jsonl")
    keep = ("step", "tokens", "val_loss")
    return {"summary": json.loads((run_dir / "summary.json").read_text()),
            "evals": [{k: r.get(k) for k in keep} for r in metrics if r["event"] == "eval"],
            "controller": [r for r in metrics if r["event"] == "controller"],
            "epochs": sum(r["event"] == "epoch_start" for r in metrics),
            "start": next((r for r in metrics if r["event"] == "start"), {}),
            "config": (run_dir / "config.yaml").read_text()}


def ensure_run(name: str, args: list[str], out: Path, records: Path) -> dict:
    """The run's record: read if committed; else the run is finished (skip), resumed, or started, then recorded."""
    record_file = records / f"{name}.json"
    if record_file.is_file():
        return json.loads(record_file.read_text())
    run_dir = out / name
    if not (run_dir / "summary.json").is_file():
        log, start = run_dir.parent / f"{run_dir.name}.log", time.time()
        if latest_checkpoint(run_dir) is not None:
            cli("train", f"resume={run_dir}", log=log)
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            cli("train", *args, f"run.dir={run_dir}", log=log)
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
    record = run_record(run_dir)
    records.mkdir(parents=True, exist_ok=True)
    record_file.write_text(json.dumps(record, indent=1))
    return record


def run_all(args, common: list[str]) -> dict[str, dict]:
    out, records = Path(args.out), Path(args.results) / "records"
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for seed in range(args.seeds):  # seed-major: a partial study already pairs every arm
        for n in args.lengths:
            runs[f"normal-{n}-s{seed}"] = ensure_run(f"normal-{n}-s{seed}", [
                "schedule=forgetter_normal", f"schedule.steps_per_epoch={n}", f"seed={seed}", *common], out, records)
        runs[f"forgetter-s{seed}"] = ensure_run(f"forgetter-s{seed}", [
            "schedule=forgetter", f"schedule.steps_per_epoch={args.forgetter_steps}",
            f"schedule.epochs={args.max_epochs}", f"seed={seed}", *common], out, records)
    return runs


def study_summary(runs: dict[str, dict], args) -> dict:
    seeds, lengths = list(range(args.seeds)), args.lengths
    value = lambda name, key: runs[name]["summary"].get(key)  # noqa: E731
    normal_dev = [[value(f"normal-{n}-s{s}", "final_val_loss") for s in seeds] for n in lengths]
    normal_test = [[value(f"normal-{n}-s{s}", "final_test_loss") for s in seeds] for n in lengths]
    f_dev = [value(f"forgetter-s{s}", "final_val_loss") for s in seeds]
    f_test = [value(f"forgetter-s{s}", "final_test_loss") for s in seeds]
    if any(v is None for v in f_test + [x for row in normal_test for x in row]):
        raise DataError("the runs have no test-split loss (final_test_loss): the verdict needs data with a test "
                        "split (data=babylm with test/)")
    best_i = min(range(len(lengths)), key=lambda i: sum(normal_dev[i]) / len(seeds))  # chosen on dev only
    start = runs["forgetter-s0"]["start"]
    summary = {
        "selection": "the normal length and FORGETTER's controller read the dev split only; verdict on test",
        "normal": {"steps": lengths, "dev_loss": normal_dev, "test_loss": normal_test, "best_steps": lengths[best_i],
                   "best_on_edge": best_i in (0, len(lengths) - 1)},
        "forgetter": {"steps_per_epoch": args.forgetter_steps, "max_epochs": args.max_epochs, "dev_loss": f_dev,
                      "test_loss": f_test, "epochs_trained": [runs[f"forgetter-s{s}"]["epochs"] for s in seeds],
                      "dev_loss_by_epoch": [[c["val_loss"] for c in runs[f"forgetter-s{s}"]["controller"]
                                             if "mode" in c] for s in seeds]},
        "verdict_test": paired_comparison(f_test, normal_test[best_i], higher_is_better=False),
        "selection_split_dev": paired_comparison(f_dev, normal_dev[best_i], higher_is_better=False),
        "means": {"best_normal_test": mean_sd(normal_test[best_i]), "forgetter_test": mean_sd(f_test),
                  "best_normal_dev": mean_sd(normal_dev[best_i]), "forgetter_dev": mean_sd(f_dev)},
        "data": start.get("corpus"), "train_tokens_on_tape": start.get("train_tokens"),
        "model": {"parameters": start.get("parameters"), "non_embedding": start.get("non_embedding_parameters")},
        "tokens": {"normal": [value(f"normal-{n}-s0", "tokens") for n in lengths],
                   "forgetter": [value(f"forgetter-s{s}", "tokens") for s in seeds]},
        "config_of_forgetter_seed0": runs["forgetter-s0"]["config"], "command": " ".join(sys.argv),
        "paper_baby10m": {"normal": 3.0457, "forgetter": 3.0053},
    }
    if args.beside:
        earlier = json.loads(Path(args.beside).read_text())
        diff = (earlier.get("verdict_test") or earlier["comparison"]["forgetter_minus_best_normal"])
        summary["beside"] = {"summary": str(args.beside), "train_tokens_on_tape": earlier.get("train_tokens_on_tape"),
                             "split": "test" if "verdict_test" in earlier else "dev (that study had no held-out split)",
                             "forgetter_minus_best_normal": diff}
    return summary


def link_back(summary: dict, beside: Path, results: Path) -> None:
    """This study's headline into the earlier study's summary, under at_more_data[results]."""
    earlier = json.loads(beside.read_text())
    entry = {"summary": str(results / "summary.json"), "train_tokens_on_tape": summary["train_tokens_on_tape"],
             "selection": summary["selection"], "normal_steps": summary["normal"]["steps"],
             "best_steps": summary["normal"]["best_steps"], "best_on_edge": summary["normal"]["best_on_edge"],
             "forgetter_steps_per_epoch": summary["forgetter"]["steps_per_epoch"],
             "verdict_test": summary["verdict_test"], "selection_split_dev": summary["selection_split_dev"],
             "means": summary["means"]}
    linked = earlier.setdefault("at_more_data", {})
    replaced = str(results) in linked
    linked[str(results)] = entry
    beside.write_text(json.dumps(earlier, indent=1))
    print(f"forgetter_study: {'replaced' if replaced else 'added'} at_more_data[{str(results)!r}] in {beside}")


def plot(runs: dict[str, dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    lengths, best = summary["normal"]["steps"], summary["normal"]["best_steps"]
    seeds = range(len(summary["forgetter"]["dev_loss"]))
    for i, n in enumerate(lengths):
        for s in seeds:
            e = runs[f"normal-{n}-s{s}"]["evals"][-1]
            ax.scatter(e["tokens"], e["val_loss"], color="tab:blue", alpha=0.9 if n == best else 0.35,
                       label=f"normal (final, {n} steps)" if s == 0 else None, marker="os^v<>"[i % 6])
    for s in seeds:
        points = [(e["tokens"], e["val_loss"]) for e in runs[f"forgetter-s{s}"]["evals"] if e["step"] > 0]
        ax.plot(*zip(*points), color="tab:red", alpha=0.7, marker=".", label="FORGETTER" if s == 0 else None)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("dev loss (the selection split)")
    ax.set_title("FORGETTER vs normal training (each normal point: one run of that length)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(summary: dict) -> str:
    n, f, m = summary["normal"], summary["forgetter"], summary["means"]
    rows = "\n".join(f"| normal, {steps} steps | {_ms(dev)} | {_ms(test)} |"
                     for steps, dev, test in zip(n["steps"], n["dev_loss"], n["test_loss"]))
    lines = [
        "# FORGETTER vs a tuned normal baseline", "", f"Command: `{summary['command']}`", "",
        f"Training tape: {summary['train_tokens_on_tape']:,} tokens. Selection (normal length, FORGETTER's controller) "
        "on the dev split; verdict on the test split.", "",
        "| arm | final dev loss (selection) | final test loss (verdict) |", "|---|---|---|", rows,
        f"| FORGETTER, {f['steps_per_epoch']} steps per epoch, controller (epochs: {f['epochs_trained']}) | "
        f"{_ms(f['dev_loss'])} | {_ms(f['test_loss'])} |", "",
        f"FORGETTER minus the normal length dev chose ({n['best_steps']} steps), paired by seed:"
        + (" **the choice is on the edge of the lengths tried: widen --normal-steps, the optimum may lie beyond**"
           if n.get("best_on_edge") else ""), "",
        "| split | pairs | mean diff | 95 % CI | p | verdict |", "|---|---|---|---|---|---|"]
    for label, cmp in (("test (verdict)", summary["verdict_test"]), ("dev (selection split)",
                                                                    summary["selection_split_dev"])):
        c = table_cells(cmp)
        lines.append(f"| {label} | {cmp['n']} | {cmp['mean_diff']:+.4f} | {c['ci']} | {c['p']} | {cmp['verdict']} |")
    if "beside" in summary:
        b = summary["beside"]
        same = summary["selection_split_dev"] if b["split"].startswith("dev") else summary["verdict_test"]
        lines += ["", f"Beside the earlier study ({b['summary']}, {b['train_tokens_on_tape']:,} training tokens, "
                  f"on {b['split']}): FORGETTER minus best normal {b['forgetter_minus_best_normal']['mean_diff']:+.4f}; "
                  f"here ({summary['train_tokens_on_tape']:,} tokens) on the same split {same['mean_diff']:+.4f}, "
                  f"on test (the verdict) {summary['verdict_test']['mean_diff']:+.4f}. Each study has its own "
                  "tokenizer, so only the paired differences compare across them, not the losses."]
    lines += ["", "Paper (Baby10M, minGemma at paper scale): normal 3.0457 -> FORGETTER 3.0053 (validation loss).",
              f"Means: best normal test {_ms_d(m['best_normal_test'])}, FORGETTER test {_ms_d(m['forgetter_test'])}."]
    return "\n".join(lines) + "\n"


def _ms(values: list[float]) -> str:
    return _ms_d(mean_sd(values))


def _ms_d(ms: dict) -> str:
    return f"{ms['mean']:.4f} ± {ms['sd']:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder of the runs")
    parser.add_argument("--results", required=True, help="folder for records/, summary.json, loss.png, report.md")
    parser.add_argument("--normal-steps", required=True, help="comma-separated lengths of the normal run")
    parser.add_argument("--forgetter-steps", type=int, required=True, help="steps per FORGETTER epoch")
    parser.add_argument("--max-epochs", type=int, default=100, help="FORGETTER's epoch ceiling (default 100)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--beside", default=None, help="an earlier study's summary.json to report beside this one")
    parser.add_argument("--link-back", action="store_true",
                        help="also record this study's headline in the --beside summary (under at_more_data)")
    parser.add_argument("common", nargs="*", help="key=value words common to every run")
    args = parser.parse_args()
    args.lengths = [int(x) for x in args.normal_steps.split(",")]
    if len(args.lengths) < 3 or args.seeds < 3:
        print("forgetter_study: --normal-steps needs >= 3 lengths (a bracket) and --seeds >= 3", file=sys.stderr)
        return 2
    if not any(w.startswith("train.precision=") and w != "train.precision=auto" for w in args.common):
        print("forgetter_study: train.precision: pin it (fp32 or bf16) — auto resolves per machine (bf16 where native),"
              " and a study resumed on another machine would mix precisions", file=sys.stderr)
        return 2
    if args.link_back and not args.beside:
        print("forgetter_study: --link-back needs --beside (the earlier summary.json to record this study in)",
              file=sys.stderr)
        return 2
    common = [*args.common, "run.progress=false", "run.plot=false", "eval.final=false"]
    runs = run_all(args, common)
    summary = study_summary(runs, args)
    results = Path(args.results)
    (results / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(runs, summary, results / "loss.png")
    text = report(summary)
    (results / "report.md").write_text(text)
    print(text)
    if args.link_back:
        link_back(summary, Path(args.beside), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
