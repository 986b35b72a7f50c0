"""The SRC paper's Table 1 rows on one benchmark: every method over the same seeds, paired tests against sequential.

    .venv/bin/python tools/src_table.py --benchmark split_mnist --out experiments/src --results docs/results/src \
        --methods sequential,ewc,si,src,rehearsal,rehearsal_src,joint --seeds 5 data_path=../shared/data/mnist

Each method is one `sleeptrain continual` run in OUT/<benchmark>-<method>/ (skipped when its results.json exists, so
a killed study continues with the next unfinished method). Writes RESULTS/<benchmark>.json and <benchmark>.md: mean ±
sd of the average accuracy over seeds (task orders), the paper's value where its text gives one, and each method
minus sequential paired by seed. Extra `key=value` words go to every run.

`--tuned-validation N` adds a second block, every method tuned alike: each one runs with `validation=N` (N training
images per class held out, the same for every method, sequential and joint included) and, where the method has a
documented grid, `tune=default` (continual/tuning.py: EWC λ, SI c, OWM α, rehearsal's lr) respaced to as many points
as the SRC search has trials (`tune_points=--search-trials`, through the method's own setting: every method scores the
same number of settings on validation, its untuned one among them), chosen on validation over the tuning seeds; src
and rehearsal_src get their SRC vector from the search scored on validation (`search_trials=--search-trials
seed=100 seeds=--tuning-orders validation=N`, run in OUT/<name>-tuned-<method>-search/), then run
with `src=that/best_src.yaml`. rehearsal_src's wake is rehearsal's, so it takes the lr rehearsal's tuning chose (list
rehearsal first) and its search runs at that lr (OUT/<name>-tuned-rehearsal_src-lrX-search/): each part tuned as
the method it shares it with. Each tuned row records its choice; paired tests against sequential and against src
(both tuned), Holm within each family. Results on the test split only; nothing that chose saw it. `--tuned-widen N`
passes `tune_widen=N` to every method with a grid (a choice on an edge extends that grid, one rule for all); rows
of a committed block whose choice lies inside their grid are kept, since widening would not change them.
`--tuning-orders N` (default 1) scores every method's tuning on the task orders of seeds 100 … 100+N-1, a grid's
points (`tune_seeds`) and the SRC search's trials (`seed=100 seeds=N`) alike: one order is a noisy judge (on
Split-Fashion OWM's choice on order 100, α × 10, scored 0.360 on the test orders against 0.485 untuned).

The committed table is a ledger too: a method whose row is already in RESULTS/<benchmark>.json, written under the same
protocol (benchmark, tag, seeds and the same extra words, in order), is taken from there and not run again, even where
OUT is gone (a fresh clone has the table but not the runs). So adding a method to a committed table runs that method
only. To run a method again, delete its row (or the file).

The tuned block is written after each of its methods (its tests on the rows so far, and a line naming the methods
still to come): commit the table as rows land, and the command re-run on a fresh clone runs only the missing ones.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sleeptrain.experiments.paired import paired_comparison  # noqa: E402

# Values the paper's text states (Nature Communications 13:7742, 2022). Its Table 1 is an image not in the seed text;
# only the cross-modal numbers are written out in the prose.
PAPER = {"cross_modal": {"sequential": 0.47, "src": 0.61, "joint": 0.90}}


def run(benchmark: str, method: str, seeds: int, out: Path, extra: list[str], tag: str = "") -> dict:
    run_dir = out / f"{benchmark}{'-' + tag if tag else ''}-{method}"
    if not (run_dir / "results.json").exists():
        start = time.time()
        log = run_dir.parent / f"{run_dir.name}.log"   # not with_suffix: a tag like lr0.1 holds a dot
        with log.open("w") as fh:
            subprocess.run([sys.executable, "-m", "sleeptrain", "continual", f"benchmark={benchmark}",
                            f"method={method}", f"seeds={seeds}", f"run.dir={run_dir}", *extra],
                           stdout=fh, stderr=subprocess.STDOUT, check=True)
        print(f"{run_dir.name}: {time.time() - start:.0f} s", flush=True)
    return json.loads((run_dir / "results.json").read_text())


def protocol_of(args: argparse.Namespace) -> dict:
    return {"benchmark": args.benchmark, "tag": args.tag, "seeds": args.seeds, "extra": list(args.extra)}


def earlier_table(path: Path, parser: argparse.ArgumentParser, protocol: dict) -> dict:
    """The committed table at `path` if it was written under `protocol`, else {} (a table from before the protocol
    was stored is read back from its command line)."""
    if not path.is_file():
        return {}
    table = json.loads(path.read_text())
    before = table.get("protocol")
    if before is None and table.get("command"):
        # the command line names neither --out nor --results (they do not change the runs)
        before = protocol_of(parser.parse_args([*shlex.split(table["command"])[1:], "--out", "-", "--results", "-"]))
    return table if before == protocol else {}


def table_row(method: str, row: dict) -> str:
    acc, cmp = row["average_accuracy"], row.get("vs_sequential") or {}
    paper = "—" if row["paper"] is None else f"{row['paper']:.2f}"
    diff = f"{cmp['mean_diff']:+.3f}" if "mean_diff" in cmp else ""
    ci = f"[{cmp['ci95'][0]:+.3f}, {cmp['ci95'][1]:+.3f}]" if cmp.get("ci95") else ""
    p = f"{cmp['p_value']:.3g}" if cmp.get("p_value") is not None else ""
    return f"| {method} | {acc['mean']:.3f} ± {acc['sd']:.3f} | {paper} | {diff} | {ci} | {p} |"


def tuned_words(benchmark: str, method: str, validation: int, trials: int, out: Path, name: str,
                extra: list[str], widen: int = 0, wake_lr: float | None = None,
                orders: int = 1) -> tuple[list[str], str]:
    """The words of a method's tuned run, and how it was tuned (running the SRC search first where it needs one).
    `wake_lr`: rehearsal_src's wake is rehearsal's, so it takes the lr rehearsal's tuning chose, and the search tunes
    its sleep at that lr — each part tuned as the method it shares it with. `orders`: the tuning task orders (seeds
    100, 101, ...), the same for a grid (`tune_seeds`) and the search (`seed=100 seeds=N`)."""
    from sleeptrain.continual.runner import load_continual_config
    from sleeptrain.continual.tuning import default_grid

    words = [*extra, f"validation={validation}", *([f"sgd.lr={wake_lr:g}"] if wake_lr is not None else [])]
    if method in ("src", "rehearsal_src"):
        search_dir = out / (f"{name}-tuned-{method}{f'-lr{wake_lr:g}' if wake_lr is not None else ''}"
                            f"{f'-orders{orders}' if orders > 1 else ''}-search")
        found = search_dir / "search.json"
        if not found.exists() or not json.loads(found.read_text()).get("complete", True):  # absent or interrupted
            subprocess.run([sys.executable, "-m", "sleeptrain", "continual", f"benchmark={benchmark}",
                            f"method={method}", f"search_trials={trials}", "seed=100", f"seeds={orders}",
                            f"run.dir={search_dir}", *words], stdout=subprocess.DEVNULL, check=True)
        best = json.loads((search_dir / "search.json").read_text())["best"]
        lr = f"sgd.lr {wake_lr:g} (rehearsal's tuned choice), " if wake_lr is not None else ""
        return ([*words, f"src={search_dir / 'best_src.yaml'}"],
                f"{lr}SRC vector searched on validation: {best['as_overrides']}")
    grid = default_grid(load_continual_config([f"benchmark={benchmark}", f"method={method}", *words]), points=trials)
    if not grid:
        return words, "nothing to tune"
    seeds = [f"tune_seeds=[{','.join(str(100 + k) for k in range(orders))}]"] if orders > 1 else []
    return [*words, "tune=default", f"tune_points={trials}", *([f"tune_widen={widen}"] if widen else []), *seeds], \
        f"grid {grid}"


def rehearsal_lr(rows: dict, methods: list[str]) -> float:
    """The lr rehearsal's tuning chose in this block, for rehearsal_src's wake (rehearsal must come first)."""
    choice = (rows.get("rehearsal") or {}).get("choice") or {}
    if "sgd.lr" not in choice:
        print("src_table: --methods: rehearsal_src's tuned wake is rehearsal's lr choice; list rehearsal before "
              f"rehearsal_src (got {','.join(methods)})", file=sys.stderr)
        raise SystemExit(2)
    return float(choice["sgd.lr"])


def kept_tuned_row(before: dict, method: str, args, wake_lr: float | None = None) -> dict | None:
    """The committed tuned row of `method` where it still stands: the same validation and search, and the same
    `--tuned-widen` — or another one where the row's choice lies inside its grid (or it has none), since widening
    acts on an edge choice only and would run the same trials to the same choice; rehearsal_src's also at the same
    wake lr (a row from before it took rehearsal's choice has none, and runs again)."""
    row = (before.get("methods") or {}).get(method)
    if row is None or before.get("validation") != args.tuned_validation or \
            before.get("search_trials") != args.search_trials or row.get("wake_lr") != wake_lr:
        return None
    if str(row.get("tuned", "")).startswith("grid") and before.get("points") != args.search_trials:
        return None           # a grid of another size (before every grid had the search's number of points)
    if row.get("tuned", "nothing to tune") != "nothing to tune" and \
            before.get("tuning_orders", 1) != args.tuning_orders:
        return None           # chosen on another number of tuning task orders
    if before.get("widen", 0) != args.tuned_widen and (row.get("choice_on_edge") or row.get("widened")):
        return None
    return {k: v for k, v in row.items() if not k.startswith("vs_")}


def tuned_block(args, methods: list[str], out: Path, name: str, earlier: dict, on_rows=None) -> dict:
    """Every method tuned alike (see the module docstring): rows with their choices and the paired tests. A row of
    the committed table's tuned block under the same validation and search is kept, as the untuned rows are.
    `on_rows(rows)` receives the block (its tests on the rows so far) after each method, so the table can be written,
    and committed, as methods finish: a study stopped midway keeps its finished rows."""
    before = earlier.get("tuned") or {}
    rows = {}
    for m in methods:
        tag = (args.tag + "-" if args.tag else "") + "tuned" + (f"-widen{args.tuned_widen}" if args.tuned_widen else "")
        tag += f"-orders{args.tuning_orders}" if args.tuning_orders > 1 else ""
        wake_lr = rehearsal_lr(rows, methods) if m == "rehearsal_src" else None
        tag += f"-lr{wake_lr:g}" if wake_lr is not None else ""
        ran_here = (out / f"{args.benchmark}-{tag}-{m}" / "results.json").exists()
        kept = None if ran_here else kept_tuned_row(before, m, args, wake_lr)
        if kept is not None:
            rows[m] = kept
            why = "same protocol" if before.get("widen", 0) == args.tuned_widen else "its choice is inside its grid"
            print(f"{name}-tuned-{m}: kept from the committed table ({why})", flush=True)
            continue
        words, how = tuned_words(args.benchmark, m, args.tuned_validation, args.search_trials, out, name, args.extra,
                                 args.tuned_widen, wake_lr, args.tuning_orders)
        result = run(args.benchmark, m, args.seeds, out, words, tag=tag)
        rows[m] = {"average_accuracy": result["average_accuracy"], "seeds": result["seeds"],
                   "per_seed": [s["average_accuracy"] for s in result["per_seed"]], "tuned": how,
                   "choice": result.get("tuning", {}).get("choice"),
                   "choice_on_edge": result.get("tuning", {}).get("choice_on_edge", []),
                   "validation_spread": validation_spread(result.get("tuning", {})),
                   "trials": trial_count(result.get("tuning"), how, args.search_trials),
                   **({"widened": result["tuning"].get("widened", {})} if args.tuned_widen and result.get("tuning")
                      else {}), **({"wake_lr": wake_lr} if wake_lr is not None else {})}
        if on_rows is not None and len(rows) < len(methods):
            on_rows(with_tests(rows))
    return with_tests(rows)


def with_tests(rows: dict) -> dict:
    """The rows with each one's paired test against sequential and against src (where those rows exist), Holm
    within each family."""
    from sleeptrain.experiments.paired import adjust_family

    rows = {m: {k: v for k, v in row.items() if not k.startswith("vs_")} for m, row in rows.items()}
    for ref in ("sequential", "src"):
        if ref not in rows:
            continue
        family = []
        for m, row in rows.items():
            if m != ref:
                row[f"vs_{ref}"] = paired_comparison(row["per_seed"], rows[ref]["per_seed"], higher_is_better=True)
                family.append(row[f"vs_{ref}"])
        adjust_family(family)
    return rows


def trial_count(tuning: dict | None, how: str, search_trials: int) -> int:
    """How many settings were scored on validation to make the row's choice: its grid's points (widened ones
    included), or the SRC search's trials; 0 for a method with nothing to tune."""
    if tuning:
        return len(tuning.get("trials", []))    # one per point, over all the tuning seeds
    return search_trials if "searched" in how else 0


def validation_spread(tuning: dict) -> float | None:
    """Best minus worst validation accuracy over the grid's points that trained (None without a grid): near 0, the
    grid made no difference and the choice, the first of equals, is on an edge by the order of the grid only."""
    scores = [t["validation_accuracy"] for t in tuning.get("trials", []) if t.get("validation_accuracy") is not None]
    return max(scores) - min(scores) if len(scores) > 1 else None


FLAT = 0.005  # a grid whose points lie within this validation accuracy of each other is called flat in the table


def tuned_lines(rows: dict, validation: int) -> list[str]:
    def vs(row: dict, ref: str) -> str:
        c = row.get(f"vs_{ref}")
        if not c or "mean_diff" not in c:
            return "—"
        p = f"p {c['p_value']:.3g}, Holm {c['p_holm']:.3g}" if c.get("p_holm") is not None else "no test"
        mde = c.get("mde_family")  # a difference Holm does not find: how large one it could have missed
        missed = f"; MDE {mde:.3f}" if mde is not None and (c.get("p_holm") is None or c["p_holm"] >= 0.05) else ""
        return f"{c['mean_diff']:+.3f} ({p}{missed})"

    lines = ["", f"## Every method tuned alike (validation = {validation} images per class, chosen on validation, "
             "scored on test)", "", "Paired by task order; Holm within each column; MDE: the smallest difference "
             "80 % power would detect after Holm, beside a difference it does not find.", "",
             "| method | tuned (mean ± sd) | minus sequential | minus src | choice | trials |", "|---|---|---|---|---|---|"]
    for m, row in rows.items():
        acc = row["average_accuracy"]
        choice = row["choice"] if row["choice"] is not None else row["tuned"]
        spread = row.get("validation_spread")
        if spread is not None and spread < FLAT:
            edge = f" (flat grid: every point within {spread:.4f} on validation)"
        else:
            edge = f" (edge: {', '.join(row['choice_on_edge'])})" if row["choice_on_edge"] else ""
        added = "; ".join(f"{k} + {v}" for k, v in (row.get("widened") or {}).items())
        widened = f" (widened: {added})" if added else ""
        trials = row.get("trials", 0 if row.get("tuned") == "nothing to tune" else "—")   # rows from before: none
        lines.append(f"| {m} | {acc['mean']:.3f} ± {acc['sd']:.3f} | {vs(row, 'sequential')} | {vs(row, 'src')} | "
                     f"{choice}{edge}{widened} | {trials} |")
    return lines


def command_line() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--out", required=True, help="folder of the runs")
    parser.add_argument("--results", required=True, help="folder for <benchmark>.json and <benchmark>.md")
    parser.add_argument("--methods", default="sequential,ewc,si,src,rehearsal,rehearsal_src,joint")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tag", default="", help="names another protocol: runs in OUT/<benchmark>-<tag>-<method>, "
                                                  "results in <benchmark>-<tag>.md")
    parser.add_argument("--tuned-validation", type=int, default=0,
                        help="> 0: also the block of every method tuned alike on this many validation images per class")
    parser.add_argument("--search-trials", type=int, default=20,
                        help="tuned block: trials of the SRC vector search, and the number of points of every "
                             "method's grid (tune_points: the same budget for every method)")
    parser.add_argument("--tuning-orders", type=int, default=1,
                        help="tuned block: the task orders (seeds 100, 101, ...) every method's tuning is scored on, "
                             "grids and the SRC search alike")
    parser.add_argument("--tuned-widen", type=int, default=0,
                        help="tuned block: a choice on its grid's edge widens the grid up to this many times "
                             "(tune_widen, the same rule for every method; 0: flagged only)")
    parser.add_argument("extra", nargs="*", help="key=value words for every run")
    args = parser.parse_args()
    if not 0 <= args.tuned_widen <= 5:
        parser.error(f"--tuned-widen: expected a whole number from 0 to 5, got {args.tuned_widen}")
    if not 1 <= args.tuning_orders <= 10:
        parser.error(f"--tuning-orders: expected a whole number from 1 to 10, got {args.tuning_orders}")
    return parser, args


def main() -> None:
    parser, args = command_line()
    out, results_dir = Path(args.out), Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    methods = args.methods.split(",")
    name = args.benchmark + (f"-{args.tag}" if args.tag else "")
    earlier = earlier_table(results_dir / f"{name}.json", parser, protocol_of(args))
    kept = {m: earlier["methods"][m] for m in methods if m in earlier.get("methods", {})
            and not (out / f"{name}-{m}" / "results.json").exists()}
    for m in kept:
        print(f"{name}-{m}: kept from {results_dir / f'{name}.json'} (same protocol; delete its row to run it again)",
              flush=True)
    runs = {m: run(args.benchmark, m, args.seeds, out, args.extra, args.tag) for m in methods if m not in kept}
    per_seed = {m: kept[m]["per_seed"] if m in kept else [s["average_accuracy"] for s in runs[m]["per_seed"]]
                for m in methods}
    paper = PAPER.get(args.benchmark, {})
    rows = {}
    for m in methods:
        row = ({key: kept[m][key] for key in ("average_accuracy", "per_seed", "seconds")} if m in kept else
               {"average_accuracy": runs[m]["average_accuracy"], "per_seed": per_seed[m], "seconds": runs[m]["seconds"]})
        row["paper"] = paper.get(m)
        if m != "sequential" and "sequential" in per_seed:
            row["vs_sequential"] = paired_comparison(per_seed[m], per_seed["sequential"], higher_is_better=True)
        rows[m] = row
    first = next(iter(runs.values())) if runs else earlier
    command = (f"tools/src_table.py --benchmark {args.benchmark}" + (f" --tag {args.tag}" if args.tag else "")
               + f" --methods {args.methods} --seeds {args.seeds} " + " ".join(args.extra)).strip()
    if args.tuned_validation:
        command += f" --tuned-validation {args.tuned_validation} --search-trials {args.search_trials}"
        command += f" --tuned-widen {args.tuned_widen}" if args.tuned_widen else ""
        command += f" --tuning-orders {args.tuning_orders}" if args.tuning_orders > 1 else ""
    base = {"benchmark": args.benchmark, "seeds": first["seeds"], "data": first.get("data"),
            "notes": first.get("notes"), "command": command, "protocol": protocol_of(args), "methods": rows}
    if args.tuned_validation:
        def partial(block: dict) -> None:
            write_table(results_dir, name, base, block, args, methods, finished=False)

        write_table(results_dir, name, base, tuned_block(args, methods, out, name, earlier, partial), args, methods)
    else:
        write_table(results_dir, name, base, None, args, methods)


def write_table(results_dir: Path, name: str, base: dict, tuned: dict | None, args, methods: list[str],
                finished: bool = True) -> None:
    """RESULTS/<name>.json and .md: the untuned rows, and the tuned block where there is one (while it is being
    run, with the rows finished so far and a line naming the ones still to come)."""
    # written only where set, so tables from before --tuned-widen / --tuning-orders stay equal
    optional = {**({"widen": args.tuned_widen} if args.tuned_widen else {}),
                **({"tuning_orders": args.tuning_orders} if args.tuning_orders > 1 else {})}
    summary = {**base, **({"tuned": {"validation": args.tuned_validation, "search_trials": args.search_trials,
                                     "points": args.search_trials, **optional, "methods": tuned}} if tuned else {})}
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(summary, indent=1))
    lines = [f"# {name}: average test accuracy after the last stage ({len(base['seeds'])} seeds)", "",
             f"Command: `{base['command']}`", "", f"Data: {base.get('data')}", "",
             "| method | ours (mean ± sd) | paper | minus sequential, paired | 95 % CI | p |", "|---|---|---|---|---|---|"]
    lines += [table_row(m, row) for m, row in base["methods"].items()]
    if tuned:
        lines += tuned_lines(tuned, args.tuned_validation)
        if not finished:
            lines += ["", f"Not run yet: {', '.join(m for m in methods if m not in tuned)} (the command resumes)."]
    (results_dir / f"{name}.md").write_text("\n".join(lines) + "\n")
    if finished:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
