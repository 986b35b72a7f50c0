"""Task `babylm`: the BabyLM evaluation pipeline's zero-shot tasks, scored and written as the pipeline does.

    sleeptrain eval MODEL_DIR suite=babylm-full data=evaluation_data     # blimp, supplement, ewok, entity tracking,
    sleeptrain eval RUN/chck_1M suite=babylm-fast data=evaluation_data   #   wug (both), comps — fast: no comps

Reading (`evaluation_data/babylm_data.py` lists the folders), scoring (`completion_ranking.py`) and the rules follow
`babylm/evaluation-pipeline-2025`: completion ranking by summed log-probability (causal) or PLL (masked, the `mlm`
backend), ties counted as the pipeline counts them (`babylm.ties=correct`; `half` gives 1/m), temperatures as its
--min/--max_temperature grid picks the best on the data, the average over UIDs. A dataset folder that is missing is
skipped with one line naming it. Beside the results file, the pipeline's own files for every dataset —
`OUT/<model>/<revision>/zero_shot/<backend>/<task>/<data folder>/predictions.json` and `best_temperature_report.txt`
— so `collate_preds.py` reads a sleeptrain evaluation as its own (`babylm.out`, default MODEL_DIR/eval/babylm).
The reading task (`reading/reading_data.csv`: surprisal's ΔR² for eye tracking and self-paced reading) is scored as
the pipeline's `reading/run.py` does (`reading.py`). AoA (full suite; `aoa/cdi_childes.json`): the surprisal of each
CDI word in its contexts on every chck_* folder of the run (MODEL_DIR's, when it is RUN/final; else
`babylm.checkpoints=RUN_DIR`), written as the pipeline's `AoA_word/surprisal.json`, scored against `aoa/cdi_human.csv`
as its AoAEvaluator does (`aoa.py`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sleeptrain.config import check_choice, check_positive, help_field
from sleeptrain.errors import ConfigError
from sleeptrain.evaluate.aoa import TRACK_REVISIONS
from sleeptrain.evaluate.babylm_data import SUITES, read_dataset, suite_root
from sleeptrain.evaluate.completion_ranking import best_temperature, rank, report_text, score_dataset
from sleeptrain.evaluate.tasks import EvalTask, LoadedModel, TaskContext, register_task
from sleeptrain.fsutil import atomic_write_text

CHECKPOINT = re.compile(r"^chck_\d+[KM]?$")


@dataclass
class BabyLMEvalConfig:
    enabled: bool = help_field("run the BabyLM pipeline's zero-shot tasks (suite=babylm-fast|babylm-full sets it)",
                               default=False)
    suite: str = help_field("full (final models: full_eval/) | fast (checkpoints: fast_eval/)", default="full")
    data: Optional[str] = help_field("the pipeline's evaluation_data/ folder (or its full_eval/ / fast_eval/)",
                                     default=None)
    ties: str = help_field("correct (the pipeline: the first of tied candidates wins, and the correct one is listed "
                           "first) | half (1/m of a point for m tied candidates)", default="correct")
    temperatures: list[float] = help_field("logit temperatures tried; the best average is reported, as the "
                                           "pipeline's --min/--max_temperature grid (default: 1.0 only)",
                                           default_factory=lambda: [1.0])
    backend: str = help_field("auto (causal or mlm, by the model) | mntp (a masked model trained with masked next-"
                              "token prediction, as the pipeline's mntp backend reads it)", default="auto")
    tasks: list[str] = help_field("only these pipeline tasks (blimp, ewok, entity_tracking, wug_adj, wug_past, "
                                  "comps, reading, aoa; default: the suite's all)", default_factory=list)
    checkpoints: Optional[str] = help_field("AoA: the run folder whose chck_* model folders it reads (default: "
                                            "MODEL_DIR's run when MODEL_DIR is RUN_DIR/final)", default=None)
    track: str = help_field("AoA: strict-small (checkpoints chck_1M ... chck_100M) | strict (... chck_1000M): the "
                            "revisions collate_preds expects, named when some are missing", default="strict-small")
    out: Optional[str] = help_field("root of the pipeline's output layout (default: MODEL_DIR/eval/babylm)",
                                    default=None)
    model_name: Optional[str] = help_field("<model> level of the layout (default: the run's folder name for a run's "
                                           "final/ or chck_*, else the model folder's name)", default=None)
    revision: Optional[str] = help_field("<revision> level (default: chck_<N> for a word checkpoint, else main)",
                                         default=None)

    def __post_init__(self) -> None:
        check_choice("babylm.suite", self.suite, tuple(SUITES))
        check_choice("babylm.ties", self.ties, ("correct", "half"))
        check_choice("babylm.backend", self.backend, ("auto", "mntp"))
        check_choice("babylm.track", self.track, tuple(TRACK_REVISIONS))
        if not self.temperatures:
            raise ConfigError("babylm.temperatures: give at least one temperature, e.g. [1.0]")
        for t in self.temperatures:
            check_positive("babylm.temperatures", t)
        known = {task for suite in SUITES.values() for task, _ in suite} | {"reading", "aoa"}
        for name in self.tasks:
            check_choice("babylm.tasks", name, tuple(sorted(known)))


@register_task
class BabyLMTask(EvalTask):
    name = "babylm"
    description = "the BabyLM pipeline's zero-shot tasks (completion ranking, WUG, reading), its rules and files"
    options = BabyLMEvalConfig

    def prepare(self, options: BabyLMEvalConfig, ctx: TaskContext) -> dict | None:
        """The suite's dataset folders that exist (each missing one named on stderr and recorded as skipped)."""
        if not options.data:
            raise ConfigError("babylm.data: required — the pipeline's evaluation_data/ folder (from OSF, see the "
                              "pipeline's README); e.g. sleeptrain eval MODEL suite=babylm-full data=evaluation_data")
        root = suite_root(Path(options.data), options.suite)
        found, skipped = [], {}
        for task, folder in SUITES[options.suite]:
            if options.tasks and task not in options.tasks:
                continue
            path = root / folder
            if path.is_dir():
                found.append(read_dataset(task, path))
            else:
                skipped[folder] = f"no folder {path}"
                print(f"babylm: {folder} skipped: no folder {path}", file=sys.stderr)
        for dataset in found:
            for note in dataset.notes:
                print(f"babylm: note: {note}", file=sys.stderr)
        reading = None
        if not options.tasks or "reading" in options.tasks:
            csv = root / "reading" / "reading_data.csv"
            if csv.is_file():
                from sleeptrain.evaluate.reading import read_reading

                reading = read_reading(csv)
            else:
                skipped["reading"] = f"no file {csv}"
                print(f"babylm: reading skipped: no file {csv}", file=sys.stderr)
        aoa = prepare_aoa(options, ctx.model_dir, root, skipped)
        if not (found or skipped or reading is not None or aoa):
            return None
        return {"root": root, "datasets": found, "skipped": skipped, "reading": reading, "aoa": aoa}

    def run(self, model: LoadedModel, options: BabyLMEvalConfig, data: dict, ctx: TaskContext) -> dict[str, Any]:
        if not getattr(model.tokenizer, "is_fast", False):
            raise ConfigError("babylm: the model's tokenizer is not a fast tokenizer (the pipeline's span rule needs "
                              "its character offsets); save it with tokenizers' fast class")
        if options.backend == "mntp" and not model.masked:
            raise ConfigError("babylm.backend: mntp reads a masked model; this one is causal (leave babylm.backend=auto)")
        backend = options.backend if options.backend != "auto" else ("mlm" if model.masked else "causal")
        self.layout = layout_root(options, ctx.model_dir) / "zero_shot" / backend
        self.files: list[tuple[Path, str]] = []
        out = {"suite": options.suite, "data": str(data["root"]), "backend": backend, "ties": options.ties,
               "temperatures": options.temperatures, "layout": str(self.layout), "datasets": {},
               "skipped": data["skipped"]}
        for dataset in data["datasets"]:
            scores = score_dataset(model.model, model.tokenizer, model.masked, dataset, options.temperatures,
                                   ctx.opts.batch_size, ctx.opts.progress, mntp=backend == "mntp")
            by_t = {t: rank(dataset.task, dataset.items, s, options.ties) for t, s in scores.items()}
            t = best_temperature(by_t)
            best = by_t[t]
            folder = self.layout / dataset.task / dataset.name
            self.files += [(folder / "predictions.json", json.dumps(best["predictions"])),
                           (folder / "best_temperature_report.txt", report_text(dataset.task, t, best))]
            out["datasets"][dataset.name] = {
                "task": dataset.task, "items": len(dataset.items), "temperature": t, "average": best["average"],
                "metric": "spearman_rho" if "wug" in dataset.task else "accuracy_percent",
                "tie_rate": best["tie_rate"], "by": best["accuracies"]}
        if data.get("reading") is not None:
            out["reading"] = self._reading(model, data["reading"], ctx, backend)
        if data.get("aoa"):
            out["aoa"] = self._aoa(model, data["aoa"], options, ctx, backend)
        return out

    def _aoa(self, model: LoadedModel, aoa: dict, options: BabyLMEvalConfig, ctx: TaskContext, backend: str) -> dict:
        """AoA: every checkpoint's surprisals (the pipeline's AoA_word/surprisal.json), then the curve fitness."""
        from sleeptrain.evaluate.aoa import curve_fitness, surprisal_file, surprisal_rows, surprisals
        from sleeptrain.evaluate.model_folder import load_model_folder

        rows = []
        for revision, folder in aoa["checkpoints"]:
            loaded = load_model_folder(folder, ctx.opts.device)
            if loaded.masked != model.masked:
                raise ConfigError(f"babylm.checkpoints: {folder} is a {'masked' if loaded.masked else 'causal'} "
                                  f"model, the evaluated model is not: give the run's own chck_* folders")
            values = surprisals(loaded.model, loaded.tokenizer, loaded.masked, aoa["words"], ctx.opts.batch_size,
                                ctx.opts.progress, mntp=backend == "mntp")
            rows += surprisal_rows(revision, aoa["words"], values)
            del loaded
        name = options.model_name or layout_root(options, ctx.model_dir).parent.name
        self.files.append((self.layout / "AoA_word" / "surprisal.json",
                           json.dumps(surprisal_file(name, rows), indent=2)))
        out = {"words": len(aoa["words"]), "contexts": sum(len(c) for _, c in aoa["words"]),
               "revisions": [r for r, _ in aoa["checkpoints"]], "missing_for_collate": aoa["missing"],
               "checkpoint_dir": aoa["run_dir"]}
        if aoa["human"] is not None:
            fit = curve_fitness(rows, aoa["human"])
            out.update(curve_fitness=fit["curve_fitness"], fitted_words=fit["n_words"], p_value=fit.get("p_value"))
        return out

    def _reading(self, model: LoadedModel, df, ctx: TaskContext, backend: str) -> dict:
        """The reading task: surprisals, the pipeline's regressions and its files under <backend>/reading/."""
        from sleeptrain.evaluate.reading import reading_scores, surprisals, warn_if_end_token

        warning = warn_if_end_token(model.tokenizer, model.masked)
        df = df.copy()
        df["pred"], df["prev_pred"] = surprisals(model.model, model.tokenizer, df, model.masked, ctx.opts.progress,
                                                 mntp=backend == "mntp")
        scores = reading_scores(df)
        folder = self.layout / "reading"
        rows = list(df.iterrows())
        self.files += [
            (folder / "predictions.json", json.dumps({"reading": {"predictions": [
                {"id": i, "pred": r["pred"], "prev_pred": r["prev_pred"]} for i, r in rows]}})),
            (folder / "prediction.jsonl", "".join(json.dumps({"Index": i, "Sentence": r["item"], "Word": r["word"],
                                                              "Logprob": r["pred"], "Prev_Logprob": r["prev_pred"]})
                                                  + "\n" for i, r in rows)),
            (folder / "correlations.txt", "".join(f"{m}\t{v:.4f}\n" for m, v in scores["correlations"].items())),
            (folder / "predictive_power.jsonl", "".join(json.dumps(x) + "\n" for x in scores["predictive_power"])),
            (folder / "predictive_power_spillover.jsonl",
             "".join(json.dumps(x) + "\n" for x in scores["predictive_power_spillover"])),
            (folder / "report.txt", f"EYE TRACKING SCORE: {scores['eye_tracking_score']:.2f}\n"
                                    f"SELF-PACED READING SCORE: {scores['self_paced_reading_score']:.2f}\n")]
        return {"rows": len(df), "eye_tracking_score": scores["eye_tracking_score"],
                "self_paced_reading_score": scores["self_paced_reading_score"], "warning": warning,
                "predictive_power": scores["predictive_power"]}

    def write_files(self, results_path: Path, options: BabyLMEvalConfig) -> None:
        for path, text in getattr(self, "files", []):
            atomic_write_text(path, text)


def prepare_aoa(options: BabyLMEvalConfig, model_dir: Path, root: Path, skipped: dict) -> dict | None:
    """The AoA words and the run's checkpoints (full suite only), or None with the reason in `skipped`."""
    from sleeptrain.evaluate.aoa import HUMAN_FILE, checkpoint_folders, find_words_file, read_words

    if options.suite != "full" or (options.tasks and "aoa" not in options.tasks):
        return None
    words_file = find_words_file(root)
    run_dir = Path(options.checkpoints) if options.checkpoints else (
        Path(model_dir).parent if Path(model_dir).name == "final" else None)
    if words_file is None:
        why = f"no file {root / 'aoa' / 'cdi_childes.json'}"
    elif run_dir is None:
        why = f"{model_dir} is not a run's final/ folder: give babylm.checkpoints=RUN_DIR (its chck_* folders)"
    elif not run_dir.is_dir() or not checkpoint_folders(run_dir):
        why = f"no chck_* model folders in {run_dir} (train with checkpoint.words, see docs/BABYLM.md)"
    else:
        checkpoints = checkpoint_folders(run_dir)
        names = {r for r, _ in checkpoints}
        human = root / HUMAN_FILE
        if not human.is_file():
            print(f"babylm: aoa: no {human}: surprisals written, not scored", file=sys.stderr)
        return {"words": read_words(words_file), "checkpoints": checkpoints, "run_dir": str(run_dir),
                "human": human if human.is_file() else None,
                "missing": [r for r in TRACK_REVISIONS[options.track] if r not in names]}
    skipped["aoa"] = why
    print(f"babylm: aoa skipped: {why}", file=sys.stderr)
    return None


def layout_root(options: BabyLMEvalConfig, model_dir: Path) -> Path:
    """OUT/<model>/<revision>: a run's final/ is <run>/main, its chck_<N> folders <run>/chck_<N>."""
    model_dir = Path(model_dir)
    in_run = model_dir.name == "final" or CHECKPOINT.match(model_dir.name)
    name = options.model_name or (model_dir.parent.name if in_run else model_dir.name)
    revision = options.revision or (model_dir.name if CHECKPOINT.match(model_dir.name) else "main")
    root = Path(options.out) if options.out else model_dir / "eval" / "babylm"
    return root / name / revision


def describe(result: dict) -> list[str]:
    """The console table: one line per dataset."""
    lines = [f"BabyLM {result['suite']} suite ({result['backend']}, ties {result['ties']}; pipeline files under "
             f"{result['layout']}):"]
    for name, d in result["datasets"].items():
        value = f"ρ {d['average']:+.3f}" if d["metric"] == "spearman_rho" else f"{d['average']:.2f} %"
        lines.append(f"  {d['task']:<16} {name:<26} {value:>10}  ({d['items']:,} items, T {d['temperature']:.2f}, "
                     f"ties {d['tie_rate']:.2%})")
    if "reading" in result:
        r = result["reading"]
        lines.append(f"  {'reading':<16} {'reading_data.csv':<26} eye tracking {r['eye_tracking_score']:.2f}, "
                     f"self-paced {r['self_paced_reading_score']:.2f}  ({r['rows']:,} words; ΔR² × 100 / (1 − R²))")
    if "aoa" in result:
        a = result["aoa"]
        score = (f"r {a['curve_fitness']:+.3f} over {a['fitted_words']} fitted words" if "curve_fitness" in a
                 else "not scored (no cdi_human.csv)")
        lines.append(f"  {'aoa':<16} {'cdi_childes.json':<26} {score}  ({a['words']:,} words, {a['contexts']:,} "
                     f"contexts, {len(a['revisions'])} checkpoints)")
        if a["missing_for_collate"]:
            lines.append(f"  aoa: collate_preds expects {len(a['missing_for_collate'])} more checkpoint(s): "
                         f"{', '.join(a['missing_for_collate'][:4])}{' ...' if len(a['missing_for_collate']) > 4 else ''}")
    lines += [f"  skipped {name}: {why}" for name, why in result["skipped"].items()]
    return lines


SUITE_WORDS = {"babylm-full": "full", "babylm-fast": "fast"}


def expand_suite_words(words: list[str]) -> list[str]:
    """`suite=babylm-full|babylm-fast` and `data=DIR` (the command's short forms) as babylm.* keys; with a suite, the
    plain BLiMP and perplexity tasks are off unless the words switch them on."""
    out, suite = [], None
    for word in words:
        key, _, value = word.partition("=")
        if key == "suite":
            if value not in SUITE_WORDS:
                raise ConfigError(f"suite: {value!r}; choose one of {', '.join(SUITE_WORDS)}")
            suite = SUITE_WORDS[value]
            out += ["babylm.enabled=true", f"babylm.suite={suite}"]
        elif key == "data":
            out.append(f"babylm.data={value}")
        else:
            out.append(word)
    if suite is not None:
        for task in ("blimp", "perplexity"):
            if not any(w.startswith(f"{task}.enabled=") for w in words):
                out.append(f"{task}.enabled=false")
    return out
