"""`sleeptrain continual benchmark=... method=... [key=value]`: run seeds, aggregate, write results.json and plots."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from sleeptrain.continual.config import ContinualConfig
from sleeptrain.continual.config import BENCHMARKS
from sleeptrain.continual.data import (Benchmark, cross_modal, feature_tasks, patches, split_digits, split_fashion,
                                      split_mnist)
from sleeptrain.continual.methods import run_method
from sleeptrain.continual.metrics import average_accuracy, backward_transfer, forgetting
from sleeptrain.continual.curve import worst_case
from sleeptrain.continual.plots import plot_curve, plot_fig1c, plot_patches, plot_split
from sleeptrain.continual.src import MNIST_PUBLISHED
from sleeptrain.errors import ConfigError
from sleeptrain.fsutil import atomic_write_text, timestamped_dir
from sleeptrain.stats import mean_sd


def src_presets() -> dict[str, str]:
    """Fitted SRC parameter sets shipped in `conf/continual/src/`: name -> description (first comment line)."""
    from sleeptrain.presets import list_presets

    return list_presets("continual/src")


def load_src_preset(name: str) -> tuple[dict, str]:
    """`src=NAME` (a file of `conf/continual/src/`) or `src=PATH.yaml` (e.g. the `best_src.yaml` of a search): a
    mapping holding only an `src:` section, merged over the benchmark preset."""
    from sleeptrain.presets import load_yaml, preset_path

    origin = f"src={name}"
    path = preset_path("continual/src", name, key="src")
    data = load_yaml(path, origin)
    others = sorted(set(data) - {"src"})
    if others:
        raise ConfigError(f"src: preset {name!r} may only set the src section, found {', '.join(others)}")
    return data, origin


def icarl_layer(benchmark: str, method: str, args: list[str]) -> tuple[tuple[dict, str], ...]:
    """For `method=icarl|icarl_src`, the authors' iCaRL settings of the benchmark (`conf/continual/icarl/NAME.yaml`,
    where one exists): the network and epochs of their iCaRL script and its SRC vector for the chosen `memory`."""
    from sleeptrain.presets import load_yaml

    path = Path(str(resources.files("sleeptrain") / "conf" / "continual" / "icarl" / f"{benchmark}.yaml"))
    if method not in ("icarl", "icarl_src") or not path.is_file():
        return ()
    origin = f"conf/continual/icarl/{benchmark}.yaml"
    data = load_yaml(path, origin)
    words = [a.split("=", 1)[1] for a in args if a.startswith("memory=")]
    try:
        memory = int(words[-1]) if words else ContinualConfig.__dataclass_fields__["memory"].default
    except ValueError:
        raise ConfigError(f"memory: must be a positive integer, got {words[-1]!r}") from None
    by_memory = data.pop("src_by_memory")
    data["src"] = next(entry["src"] for entry in by_memory
                       if entry["memory"] == "other" or memory in entry["memory"])
    return ((data, f"{origin} (memory {memory})"),)


def load_continual_config(args: list[str]) -> ContinualConfig:
    """`benchmark=NAME` picks the preset `conf/continual/NAME.yaml`, `src=NAME|PATH.yaml` a set of SRC parameters
    over it; the other words are key=value overrides."""
    from sleeptrain.continual.tuning import check_grid_values, default_grid, parse_tune_words
    from sleeptrain.presets import load_overrides

    args, grid = parse_tune_words(args)
    benchmark = next((a.split("=", 1)[1] for a in args if a.startswith("benchmark=")),
                     ContinualConfig.__dataclass_fields__["benchmark"].default)
    preset = Path(str(resources.files("sleeptrain") / "conf" / "continual" / f"{benchmark}.yaml"))
    if not preset.is_file():
        raise ConfigError(f"benchmark: {benchmark!r} is not allowed; choose one of {', '.join(BENCHMARKS)}")
    src_choices = [a.split("=", 1)[1] for a in args if a.startswith("src=")]
    method = next((a.split("=", 1)[1] for a in reversed(args) if a.startswith("method=")), "")
    extra = icarl_layer(benchmark, method, args) + tuple(load_src_preset(name) for name in src_choices[-1:])
    if isinstance(grid, dict):
        extra += (({"tune": grid}, "tune="),)
    cfg = load_overrides(ContinualConfig, [a for a in args if not a.startswith(("benchmark=", "src="))], preset,
                         f"benchmark={benchmark}", path_keys=("data_path", "fashion_path", "features_path", "run.dir"),
                         extra=extra)
    if grid == "default":
        found = default_grid(cfg)
        if not found:
            raise ConfigError(f"tune: method {cfg.method} has no default grid (tuned ones: ewc, si, owm, rehearsal, "
                              f"rehearsal_src; src's vector: search_trials=N validation=M)")
        if not cfg.validation:
            raise ConfigError("tune: choices are made on a validation split; add validation=N (e.g. validation=500)")
        cfg = replace(cfg, tune=found)
    if cfg.tune_points and grid != "default":
        raise ConfigError("tune_points: respaces the documented grid; give tune=default (a grid of your own: list "
                          "its values in tune=KEY:[...])")
    if cfg.tune_widen and not cfg.tune:
        raise ConfigError("tune_widen: widens a grid; give one with tune=KEY:[...] or tune=default")
    if cfg.tune:
        check_grid_values(cfg)  # a value the key cannot take is the command's error, before any data is read
    return cfg


def class_order(seed: int, task_orders: str = "permuted", n_classes: int = 10) -> list[int]:
    """Seed 0, or `task_orders=natural`: classes in natural order; else seed k > 0 a seeded permutation of the
    classes (`permuted`) or of the natural pairs 0/1, 2/3, ... (`pairs`, the iCaRL script's `randperm(5)`)."""
    if seed == 0 or task_orders == "natural":
        return list(range(n_classes))
    if task_orders == "pairs":
        pairs = np.random.default_rng([seed, 0x0DE5]).permutation(-(-n_classes // 2)).tolist()
        return [c for p in pairs for c in (2 * p, 2 * p + 1) if c < n_classes]
    return np.random.default_rng([seed, 0x0DE5]).permutation(n_classes).tolist()


def build_benchmark(cfg: ContinualConfig, seed: int, overlap: int | None = None) -> Benchmark:
    """The seed's benchmark, with `validation` images per class held out of its training sets when set."""
    bench = _benchmark(cfg, seed, overlap)
    if cfg.validation:
        from sleeptrain.continual.validation import hold_out_validation

        bench = hold_out_validation(bench, cfg.validation, seed)
    return bench


def _benchmark(cfg: ContinualConfig, seed: int, overlap: int | None = None) -> Benchmark:
    if cfg.benchmark == "patches":
        return patches(overlap, seed=seed, copies=cfg.copies)
    if cfg.benchmark == "split_mnist":
        return split_mnist(cfg.data_path, class_order(seed, cfg.task_orders), cfg.train_per_task)
    if cfg.benchmark == "split_fashion":
        return split_fashion(cfg.fashion_path, class_order(seed, cfg.task_orders), cfg.train_per_task)
    if cfg.benchmark == "cross_modal":
        return cross_modal(cfg.data_path, cfg.fashion_path)
    if cfg.benchmark == "features":
        return feature_tasks(cfg.features_path, cfg.classes_per_task,
                             lambda n_classes: class_order(seed, cfg.task_orders, n_classes))
    return split_digits(class_order(seed, cfg.task_orders), cfg.test_fraction, seed=0)


def run_split(cfg: ContinualConfig) -> dict:
    per_seed = []
    stages = None
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        bench = build_benchmark(cfg, seed)
        start = time.time()
        result = run_method(bench, cfg.method, cfg, seed)
        stages = result.stages
        per_seed.append({"seed": seed, "task_classes": [t.classes for t in bench.tasks],
                         "accuracy_matrix": result.matrix.tolist(),
                         "average_accuracy": average_accuracy(result.matrix),
                         "forgetting": forgetting(result.matrix, result.learned),
                         "bwt": backward_transfer(result.matrix, result.learned),
                         "seconds": time.time() - start, "sleeps": result.sleep_info})
        if result.curve:  # eval_every: the continual evaluation and its worst-case metrics
            per_seed[-1]["curve"] = result.curve
            per_seed[-1].update(worst_case(result.curve, len(bench.tasks)))
        if result.nme:  # icarl: nearest-mean-of-exemplars accuracies beside the network's own
            per_seed[-1]["nme_matrix"] = result.nme
            per_seed[-1]["nme_average_accuracy"] = average_accuracy(np.array(result.nme))
        print(f"  seed {seed}: average accuracy {per_seed[-1]['average_accuracy']:.3f} "
              f"({per_seed[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    matrices = np.array([r["accuracy_matrix"] for r in per_seed])
    nme = {"nme_average_accuracy": mean_sd([r["nme_average_accuracy"] for r in per_seed]),
           "nme_note": "nearest-mean-of-exemplars accuracy (nnpredict_iCarl); average_accuracy is the network's own "
                       "output, the figure the authors' run_icarl_sleep.m stores"} if "nme_matrix" in per_seed[0] else {}
    worst = {key: mean_sd([r[key] for r in per_seed]) for key in ("min_acc", "wc_acc")
             if per_seed[0].get(key) is not None}
    return {
        **worst,
        "stages": stages, "tasks": [f"t{i + 1}" for i in range(matrices.shape[2])],
        "accuracy_matrix": {"mean": matrices.mean(0).tolist(),
                            "sd": (matrices.std(0, ddof=1) if len(per_seed) > 1 else 0 * matrices[0]).tolist()},
        "average_accuracy": mean_sd([r["average_accuracy"] for r in per_seed]),
        "forgetting": mean_sd([r["forgetting"] for r in per_seed]),
        "bwt": mean_sd([r["bwt"] for r in per_seed]),
        **nme,
        "per_seed": per_seed,
        "data": {"n_train": sum(len(t.y_train) for t in bench.tasks),
                 "n_seen_by_sleep": sum(len(t.seen) for t in bench.tasks),
                 "n_test": sum(len(t.y_test) for t in bench.tasks)},
        "notes": bench.notes + ("; task t holds the t-th pair of the seed's class order (seed 0: 0-1, 2-3, ...)"),
    }


def run_patches(cfg: ContinualConfig) -> dict:
    by_overlap = {}
    for overlap in cfg.overlaps:
        rows = []
        for seed in range(cfg.seed, cfg.seed + cfg.seeds):
            bench = build_benchmark(cfg, seed, overlap)
            result = run_method(bench, cfg.method, cfg, seed)
            all_four = result.matrix.mean(axis=1)  # accuracy on the four images (tasks weigh equally)
            print(f"  overlap {overlap}, seed {seed}: {' -> '.join(f'{a:.2f}' for a in all_four)}", file=sys.stderr,
                  flush=True)
            named = dict(zip(result.stages, all_four))
            probes = dict(zip(result.stages, result.probe))
            rows.append({"after_t1": named.get("train_t1", named.get("train_joint")),
                         "after_t2": named.get("train_t2", named.get("train_joint")),
                         "after_sleep": named.get("sleep_t2"),
                         "probe": {key: probes[stage] for key, stage in (("after_t1", "train_t1"),
                                   ("after_t2", "train_t2"), ("after_sleep", "sleep_t2")) if stage in probes}})
        entry, sd = {}, {}
        for key in ("after_t1", "after_t2", "after_sleep"):
            values = [r[key] for r in rows if r[key] is not None]
            if values:
                stats = mean_sd(values)
                entry[key], sd[key] = stats["mean"], stats["sd"]
        by_overlap[str(overlap)] = {**entry, "sd": sd, "n": len(rows), "fig1c": fig1c(rows)}
    return {"by_overlap": by_overlap, "unique_pixels_per_image": {str(o): 100 // 6 - o for o in cfg.overlaps},
            "fig1c_note": "input to each output neuron when T1's image 0 is shown (mean over seeds): "
                          "t1_neuron0 = its own neuron, t2_max = the larger of T2's neurons 2 and 3"}


def fig1c(rows: list[dict]) -> dict:
    """The paper's Fig. 1C from each seed's probe: input to T1's output neuron 0 and the larger input to T2's
    neurons 2-3 when image 0 is shown, after T1, after T2 and after SRC (mean and sd over seeds)."""
    out = {}
    for key in ("after_t1", "after_t2", "after_sleep"):
        probes = [r["probe"][key] for r in rows if key in r["probe"]]
        if not probes:
            continue
        own = [p[0] for p in probes]
        rival = [max(p[2:4]) for p in probes]
        out[key] = {"t1_neuron0": mean_sd(own), "t2_max": mean_sd(rival),
                    "all_neurons": np.mean(probes, axis=0).tolist()}
    return out


def run_continual(cfg: ContinualConfig) -> tuple[dict, Path]:
    from sleeptrain.presets import flat_config

    run_dir = Path(cfg.run.dir) if cfg.run.dir else (
        timestamped_dir("runs", f"continual-{cfg.benchmark}-{cfg.method}"))
    if (run_dir / "results.json").exists():
        raise ConfigError(f"run.dir: {str(run_dir)!r} already holds results; choose another run.dir")
    if cfg.benchmark in ("split_mnist", "split_fashion", "cross_modal", "features"):
        build_benchmark(cfg, cfg.seed)  # data errors surface before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if cfg.search_trials:
        return run_search(cfg, run_dir, start), run_dir
    tuning = {}
    if cfg.tune:
        from sleeptrain.continual.tuning import tune

        cfg, record = tune(cfg, build_benchmark, run_method)
        tuning = {"tuning": record}
        print(f"  tuned on validation (seeds {record['seeds']}): {record['choice']}", file=sys.stderr, flush=True)
    body = run_patches(cfg) if cfg.benchmark == "patches" else run_split(cfg)
    results = {"benchmark": cfg.benchmark, "method": cfg.method, "seeds": list(range(cfg.seed, cfg.seed + cfg.seeds)),
               **tuning, **body, "seconds": time.time() - start, "config": flat_config(cfg)}
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=1))
    if cfg.run.plot:
        title = f"{cfg.benchmark} / {cfg.method} ({cfg.seeds} seed{'s' if cfg.seeds > 1 else ''})"
        if cfg.benchmark == "patches":
            plot_patches(results, run_dir / "accuracy_vs_overlap.png", title)
            plot_fig1c(results, run_dir / "fig1c_inputs.png", title)
        else:
            plot_split(results, run_dir / "accuracy_matrix.png", title)
            if results.get("per_seed") and "curve" in results["per_seed"][0]:
                first = results["per_seed"][0]
                plot_curve(first["curve"], run_dir / "continual_eval.png",
                           f"{title}: seed {first['seed']}, every {cfg.eval_every} iterations", len(results["tasks"]))
    return results, run_dir


def analyse_command(args: list[str]) -> str:
    """`sleeptrain continual analyse data_path=MNIST [key=value]`: the paper's analyses of the sleep on two-task MNIST
    (`sleeptrain.continual.analysis`), with the split_mnist preset; returns the summary to print."""
    from sleeptrain.continual.analysis import analyse, describe_analysis

    if any(a.startswith("benchmark=") and a != "benchmark=split_mnist" for a in args):
        raise ConfigError("benchmark: the analysis runs on split_mnist (digits 0/1, then 2/3); drop benchmark=")
    cfg = load_continual_config(["benchmark=split_mnist", *args])
    run_dir = Path(cfg.run.dir) if cfg.run.dir else timestamped_dir("runs", "continual-analyse")
    if (run_dir / "analysis.json").exists():
        raise ConfigError(f"run.dir: {str(run_dir)!r} already holds an analysis; choose another run.dir")
    build_benchmark(cfg, cfg.seed)  # data errors surface before anything is written
    result = analyse(cfg, run_dir)
    return describe_analysis(result, run_dir)


def run_search(cfg: ContinualConfig, run_dir: Path, start: float) -> dict:
    """Search the SRC vector; search.json and best_src.yaml are rewritten after every trial (`complete` false until
    the last), so an interrupted search keeps what it found."""
    from sleeptrain.continual.search import search
    from sleeptrain.presets import flat_config

    def record(found: dict, complete: bool) -> dict:
        best, score = found["trials"][0], found["score_key"]
        results = {"benchmark": cfg.benchmark, "method": "search", "searched_method": cfg.method,
                   "seeds": list(range(cfg.seed, cfg.seed + cfg.seeds)), "strategy": cfg.search_strategy,
                   "complete": complete, "trials": found["trials"], "reference": found["reference"],
                   "score_key": score, "best": {key: best[key] for key in ("x", score, "as_overrides")},
                   "seconds": time.time() - start, "config": flat_config(cfg)}
        atomic_write_text(run_dir / "search.json", json.dumps(results, indent=1))
        if best[score] is not None:  # while every trial so far diverged there is no best to write
            atomic_write_text(run_dir / "best_src.yaml", best_src_yaml(results, run_dir))
        return results

    def progress(trial: dict, found: dict) -> None:
        record(found, complete=False)
        key = found["score_key"]
        def shown(value):
            return "diverged" if value is None else f"{value:.4f}"

        print(f"  trial {trial['trial']:>3}: {key.replace('_', ' ')} {shown(trial[key])} "
              f"(best {shown(found['trials'][0][key])}, {found['reference']['method']} "
              f"{found['reference'][key]:.4f}; {time.time() - start:.0f} s)  {trial['as_overrides']}",
              file=sys.stderr, flush=True)

    earlier = earlier_search(cfg, run_dir)
    benches = [build_benchmark(cfg, cfg.seed + k) for k in range(cfg.seeds)]  # seed k > 0: another task order
    found = search(benches, cfg, cfg.search_trials, cfg.seed, cfg.search_spread,
                   method=cfg.method, strategy=cfg.search_strategy, sleep_length=cfg.search_sleep_length,
                   on_trial=progress, evaluate_on="validation" if cfg.validation else "train", earlier=earlier)
    return record(found, complete=True)


def earlier_search(cfg: ContinualConfig, run_dir: Path) -> list[dict]:
    """The trials of an interrupted search in `run_dir` (`complete` false) under the same settings, to resume; a
    finished search there, or one with other settings, is refused (nothing is overwritten)."""
    from sleeptrain.presets import flat_config

    path = run_dir / "search.json"
    if not path.is_file():
        return []
    before = json.loads(path.read_text())
    if before.get("complete", True):
        raise ConfigError(f"run.dir: {str(run_dir)!r} already holds a finished search; choose another run.dir")
    free = ("run.dir", "search_trials")  # neither changes a trial: more trials extend the search, fewer take a prefix
    same = {k: v for k, v in before.get("config", {}).items() if k not in free} == \
        {k: v for k, v in flat_config(cfg).items() if k not in free}
    if not same:
        raise ConfigError(f"run.dir: {str(run_dir)!r} holds an interrupted search with other settings; choose "
                          "another run.dir (or give the same settings to resume it)")
    print(f"search: resuming {len(before['trials'])} earlier trial(s) from {path}", file=sys.stderr, flush=True)
    return before["trials"]


def best_src_yaml(results: dict, run_dir: Path) -> str:
    """The best trial as an `src=` preset file: `sleeptrain continual ... src=RUN_DIR/best_src.yaml`."""
    import yaml

    best, score = results["best"], results["score_key"]
    section = {}
    for word in best["as_overrides"].split():
        key, value = word.split("=", 1)
        section[key.removeprefix("src.")] = yaml.safe_load(value)
    ref = results["reference"]
    header = (f"# SRC fitted by search ({results['strategy']}, {len(results['trials'])} trials, "
              f"{results['searched_method']}, {results['benchmark']}, seeds {results['seeds']}): "
              f"{score.replace('_', ' ')} {best[score]:.4f} vs {ref['method']} {ref[score]:.4f} ({run_dir.name})\n")
    return header + yaml.safe_dump({"src": section}, sort_keys=False)


def patches_summary(by_overlap: dict) -> list[str]:
    """Where accuracy after T2 is below 1: forgetting (lower than after T1) or T2 not learned (not lower) — Fig. 1C
    tells them apart, and the paper's narrative is the first."""
    short = {o: v for o, v in by_overlap.items() if "after_sleep" in v and v["after_t2"] < 0.99}
    if not short:
        return []
    forgot = [o for o, v in short.items() if v["after_t2"] < v["after_t1"] - 1e-9]
    unlearned = [o for o in short if o not in forgot]
    gain = np.mean([v["after_sleep"] - v["after_t2"] for v in short.values()])
    parts = ([f"lower than after T1 at {', '.join(forgot)} (forgetting)"] if forgot else []) + \
        ([f"not lower than after T1 at {', '.join(unlearned)} (T2 not fully learned, nothing forgotten)"]
         if unlearned else [])
    return [f"  after T2 accuracy is below 1.00 at overlaps {', '.join(short)}: {'; '.join(parts)}; the sleep changed "
            f"accuracy there by {gain:+.2f} on average (the paper's Fig. 1B; at 16 the four images are identical)"]


def describe(results: dict, run_dir: Path) -> str:
    if results.get("method") == "search":
        best, key = results["best"], results["score_key"]
        return (f"search: {len(results['trials'])} trials in {results['seconds']:.0f} s -> {run_dir / 'search.json'}\n"
                f"  best {key.replace('_', ' ')} {best[key]:.3f} ({results['reference']['method']} without "
                f"sleep: {results['reference'][key]:.3f}) with\n  {best['as_overrides']}\n"
                f"  as a preset: src={run_dir / 'best_src.yaml'}")
    lines = [f"{results['benchmark']} / {results['method']}: {len(results['seeds'])} seed(s) in "
             f"{results['seconds']:.0f} s -> {run_dir / 'results.json'}"]
    if "tuning" in results:
        t = results["tuning"]
        edge = f" (on the grid's edge: {', '.join(t['choice_on_edge'])})" if t["choice_on_edge"] else ""
        lines.append(f"  tuned on validation over {len(t['trials'])} point(s), seeds {t['seeds']}: {t['choice']} "
                     f"(validation accuracy {t['choice_validation_accuracy']:.3f}){edge}; test below")
    if results["benchmark"] == "patches":
        for overlap, v in results["by_overlap"].items():
            parts = [f"{k} {v[k]:.2f}±{v['sd'][k]:.2f}" for k in ("after_t1", "after_t2", "after_sleep") if k in v]
            lines.append(f"  overlap {overlap:>2}: " + ", ".join(parts))
        lines += patches_summary(results["by_overlap"])
    else:
        for key in ("average_accuracy", "forgetting", "bwt", "nme_average_accuracy", "min_acc", "wc_acc"):
            if key not in results:
                continue
            lines.append(f"  {key:<20} {results[key]['mean']:.3f} ± {results[key]['sd']:.3f}")
    config = results.get("config", {})
    if (results["method"] == "rehearsal_src" and results["benchmark"] == "split_mnist"
            and config.get("src.inc") == MNIST_PUBLISHED.inc and config.get("src.dec") == MNIST_PUBLISHED.dec):
        lines.append("  note: these are the paper's SRC parameters, fitted for src without rehearsal; with "
                     "rehearsal_fraction 0.05 or 0.1 they cost accuracy — fitted sets (legacy, fitted before the faithful "
                     "port; refit with search_trials): "
                     + ", ".join(f"src={name}" for name in src_presets() if name.startswith("split_mnist_rehearsal")))
    return "\n".join(lines)
