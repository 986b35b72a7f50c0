"""Does sleep help a small LM? The equal-budget study of issue 19 — one resumable command built on `sleeptrain compare`.

    .venv/bin/python tools/lm_study.py docs/results/lm-study/spec.yaml --dir experiments/lm-study \\
        --results docs/results/lm-study

The spec is a `sleeptrain compare` arms file (arms, common, seeds, budget, priority, tune) plus four study keys that
compare does not read: `baselines` (the arms a sleep arm must beat), `systems` (seed system -> its arms, for the
verdicts), `published` (the seed papers' numbers, printed beside ours) and `title` (the report's heading); any other
key is an error. The command trains every arm x seed that is not
finished (a killed study resumes: finished runs are skipped, a run with a checkpoint continues from it), then writes
to --results:

- `summary.json`: {"arms": {NAME: {"seeds", "blimp" (per-seed overall accuracy), "val_loss" (per-seed final),
  "tokens" (token positions trained, replay included; mean over the finished seeds, the plan before any),
  "real_tokens"}}, "model", "data", "budget", "off_budget" (arms more than 2 % from it), "best_baseline",
  "vs_best_baseline", "contrasts" (the spec's `contrasts: {LABEL: [ARM, REFERENCE]}`, an ablation's own effect
  paired by seed, in the same Holm family), "verdicts", "published"}; the best baseline is, among the baselines with
  the most finished seeds, the one with the lower mean dev loss where the runs have test scores (selection reads dev,
  the verdicts test), else (a study from before test scores) the higher mean BLiMP;
- `report.md`: mean ± sd per arm, paired tests and effect sizes (Cohen's d_z) against the best baseline, BLiMP by
  phenomenon, a verdict per seed system, the published numbers;
- `loss.png` (training loss, mean ± sd over seeds, sleep phases shaded) and `blimp_by_phenomenon.png`.

`--report-only` writes the report from the runs finished so far and trains nothing (a partial study is reported as
partial: the seeds behind every number are listed).

**The records.** A run folder holds checkpoints (tens of MB) and lives in --dir, which is not committed; a new clone
has none. So each run, as it finishes, also leaves a small record in RESULTS/records/<arm>/seed<k>.json (its figures,
BLiMP by phenomenon, the model and data it saw, its loss curve thinned to ~300 points and its sleep phases), and
RESULTS/records/study.json keeps the experiment (arms, common settings, seeds, budget). Commit them: the report is
written from the records, and a re-run skips every arm x seed with a record, whether or not --dir still has its
folder. Records of another experiment (other common settings or budget, an arm with other overrides) are refused with
a one-line error; arms and seeds may be added. To train a run again, delete its record and its folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sleeptrain.config import ModelConfig  # noqa: E402
from sleeptrain.errors import ConfigError, SleeptrainError  # noqa: E402
from sleeptrain.experiments.compare import (  # noqa: E402
    check_arms_file_keys, continuation_conflict, parse_args, run_compare)
from sleeptrain.experiments.plot import plot_arms, run_curve  # noqa: E402
from sleeptrain.experiments.paired import adjust_family, paired_comparison, table_cells  # noqa: E402
from sleeptrain.experiments.records import METRICS, TEST_METRICS, run_record  # noqa: E402
from sleeptrain.fsutil import atomic_write_text  # noqa: E402
from sleeptrain.presets import load_yaml  # noqa: E402
from sleeptrain.stats import mean_sd  # noqa: E402

METRIC_KEYS = {"blimp": "blimp_overall", "val_loss": "final_val_loss"}   # studies whose runs have no test loss
TEST_METRIC_KEYS = {"blimp": "blimp_overall", "test_loss": "test_loss"}    # verdicts on the test split
CURVE_POINTS = 300  # training-loss points kept per run in its record
STUDY_KEYS = ("arms", "common", "seeds", "budget", "natural", "tune")  # what identifies the study's runs
DEFAULT_TITLE = "Does sleep help a small LM? The equal-budget study (issue 19)"
SPEC_KEYS = ("baselines", "systems", "contrasts", "published", "title")  # the spec's keys compare does not read
TUNING = "tuning"  # records/tuning/<arm>/tNN/seed<k>.json: the tuning trials' runs (no arm may take this name)


def open_ledger(ledger: Path, experiment: dict) -> dict:
    """RESULTS/records/study.json for `experiment`: written when absent; else it must hold the same experiment, or
    the same with arms or seeds added (then it is extended). Returns the study record now saved."""
    saved = ledger / "study.json"
    if saved.is_file():
        before = json.loads(saved.read_text())
        why = continuation_conflict(before, experiment, arms_may_drop=True)
        if why:
            raise ConfigError(f"--results: {str(ledger)!r} holds the records of another study ({why}); give a "
                              "changed arm a new name, or choose another --results")
        arms = {**before["arms"], **experiment["arms"]}
        budgets = {**before["budget"]["arms"], **experiment["budget"]["arms"]}
        tune = {"tune": experiment["tune"]} if "tune" in experiment else {}  # the same, or with `widen` changed
        experiment = {**before, **tune, "arms": arms, "seeds": max(before["seeds"], experiment["seeds"]),
                      "budget": {**experiment["budget"], "arms": budgets},
                      "natural": sorted(set(before.get("natural", [])) | set(experiment.get("natural", [])))}
    ledger.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(experiment, indent=1))  # a kill mid-write leaves the old file, not half
    return experiment


def describe_run(run_dir: Path) -> dict:
    """The model and data a finished run trained on (identical across arms but for the schedule's settings)."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    start = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    model = {**cfg["model"], "parameters": start.get("parameters"),
             "non_embedding_parameters": start.get("non_embedding_parameters"), "vocab_size": start.get("vocab_size")}
    masked = ModelConfig(**cfg["model"]).is_masked_lm
    model["objective"] = "masked LM (val_loss: masked-token loss)" if masked else "causal LM"
    data = {"source": cfg["data"].get("source"), "path": cfg["data"]["path"], "seq_len": cfg["data"]["seq_len"],
            "blimp_scoring": (f"pseudo-log-likelihood ({cfg['eval']['method']})" if masked
                              else "sentence log-probability"),
            "train_tokens": start.get("train_tokens"), "dev_tokens": start.get("dev_tokens"),
            "blimp": cfg["eval"]["blimp_path"], "blimp_pairs_per_paradigm": cfg["eval"]["final_max_pairs"] or "all"}
    return {"model": model, "data": data}


def record_path(ledger: Path, label: str, seed: int) -> Path:
    """records/<arm>/seed<k>.json, or records/tuning/<arm>/tNN/seed<k>.json for a tuning trial (label ARM/tNN)."""
    return (ledger / TUNING / label if "/" in label else ledger / label) / f"seed{seed}.json"


def record_run(ledger: Path, label: str, seed: int, run_dir: Path) -> Path | None:
    """Write the record of a finished run (None while it is unfinished): its figures, the model and data it saw, its
    loss curve thinned, and its learning-curve points (scored by compare before it hands the run over)."""
    from sleeptrain.experiments.curves import points, score_run

    record = run_record(run_dir)
    if record is None:
        return None
    out = record_path(ledger, label, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tuning = "/" in label  # a tuning trial: selection only, no learning curve
    milestones = score_run(run_dir) if not tuning and any(p["point"].startswith("chck_")
                                                          for p in points(run_dir)) else []
    atomic_write_text(out, json.dumps({"arm": label, "seed": seed, **record, **describe_run(run_dir),
                                       "curve": run_curve(run_dir, points=CURVE_POINTS), "milestones": milestones}))
    return out


def recorded_runs(ledger: Path) -> frozenset:
    """The run folders (relative to the experiment folder, as compare names them) that have a record."""
    found = set()
    for path in ledger.rglob("seed*.json"):
        rel = path.relative_to(ledger).with_suffix("")
        found.add(str(rel) if rel.parts[0] == TUNING else str(Path("runs") / rel))
    return frozenset(found)


def ledger_reader(ledger: Path, exp_dir: Path):
    """`record_of(run_dir)` for compare's tuning choice: the run's record where the ledger has one, else its folder."""
    def record_of(run_dir: Path) -> dict | None:
        rel = Path(run_dir).relative_to(exp_dir)
        path = ledger / (rel if rel.parts[0] == TUNING else Path(*rel.parts[1:])).with_suffix(".json")
        return json.loads(path.read_text()) if path.is_file() else run_record(run_dir)
    return record_of


def sync_ledger(ledger: Path, exp_dir: Path) -> None:
    """Record every finished run in `exp_dir` (a `sleeptrain compare` folder) that has no record yet."""
    experiment = json.loads((exp_dir / "experiment.json").read_text())
    open_ledger(ledger, {k: experiment[k] for k in STUDY_KEYS if k in experiment})
    for arm in experiment["arms"]:
        for seed in range(experiment["seeds"]):
            if not (ledger / arm / f"seed{seed}.json").is_file():
                record_run(ledger, arm, seed, exp_dir / "runs" / arm / f"seed{seed}")
    for run_dir in sorted((exp_dir / TUNING).glob("*/t*/seed*")):  # ARM/tNN/seedK (beside it: seedK.log)
        if not run_dir.is_dir() or not run_dir.name.removeprefix("seed").isdigit():
            continue
        label, seed = f"{run_dir.parent.parent.name}/{run_dir.parent.name}", int(run_dir.name.removeprefix("seed"))
        if not record_path(ledger, label, seed).is_file():
            record_run(ledger, label, seed, run_dir)


def read_ledger(ledger: Path) -> tuple[dict, dict[str, dict[int, dict]]]:
    """(the study record, {arm: {seed: record}}) from RESULTS/records."""
    if not (ledger / "study.json").is_file():
        raise ConfigError(f"--results: no study records in {str(ledger)!r} yet (records/study.json); train first, or "
                          "give --dir a study folder")
    study = json.loads((ledger / "study.json").read_text())
    runs = {arm: {} for arm in study["arms"]}
    for arm in study["arms"]:
        for seed in range(study["seeds"]):
            path = ledger / arm / f"seed{seed}.json"
            if path.is_file():
                runs[arm][seed] = json.loads(path.read_text())
    return study, runs


def effect_size(arm: list[float], base: list[float]) -> float | None:
    """Cohen's d_z: mean of the paired differences over their standard deviation."""
    import numpy as np

    d = np.asarray([a - b for a, b in zip(arm, base)], dtype=float)
    if d.size < 2 or d.std(ddof=1) == 0:
        return None
    return float(d.mean() / d.std(ddof=1))


def by_phenomenon(arm: str, runs: dict[int, dict], study: dict) -> dict:
    """Mean ± sd per phenomenon over the seeds whose record has it; an arm none of whose records has it (runs imported
    from an older summary, see records/study.json "imported") falls back on the imported per-arm figures."""
    have = [s for s in sorted(runs) if runs[s].get("by_phenomenon")]
    if not have:
        return study.get("imported", {}).get("by_phenomenon", {}).get(arm, {})
    return {p: mean_sd([runs[s]["by_phenomenon"].get(p) for s in have])
            for p in sorted({p for s in have for p in runs[s]["by_phenomenon"]})}


def arm_row(arm: str, by_seed: dict[int, dict], study: dict) -> dict:
    """One arm's row of summary.json from its finished runs' records."""
    done = sorted(by_seed)
    budget = study["budget"]
    return {
        "seeds": done, "blimp": [by_seed[s]["blimp_overall"] for s in done],
        "val_loss": [by_seed[s]["final_val_loss"] for s in done],
        "test_loss": [by_seed[s].get("test_loss") for s in done],
        "pre_end_ops": [by_seed[s].get("pre_end_ops") for s in done],
        "tokens": (round(sum(by_seed[s]["positions"] for s in done) / len(done)) if done
                   else budget["arms"][arm]["budget_positions"]),
        "tokens_planned": budget["arms"][arm]["budget_positions"],
        "positions": [by_seed[s]["positions"] for s in done],
        "real_tokens": [by_seed[s]["tokens"] for s in done],
        "seconds": [by_seed[s]["seconds"] for s in done],
        "by_phenomenon": by_phenomenon(arm, by_seed, study),
        "loss_curves": sum(1 for s in done if by_seed[s].get("curve"))}


def paired_with(arm_runs: dict[int, dict], best_runs: dict[int, dict], keys: dict[str, str]) -> dict:
    """An arm against the best baseline on each metric, over the seeds both finished (paired)."""
    common = sorted(set(arm_runs) & set(best_runs))
    row = {}
    for name, key in keys.items():
        a = [arm_runs[s][key] for s in common]
        b = [best_runs[s][key] for s in common]
        row[name] = {**paired_comparison(a, b, {**METRICS, **TEST_METRICS}[key][1]), "seeds": common,
                     "effect_size_dz": effect_size(a, b)}
    return row


def study_summary(study: dict, runs: dict[str, dict[int, dict]], spec: dict, ledger: Path | None = None) -> dict:
    """summary.json from the study record and its runs' records (`read_ledger`; the tuning trials' records are read
    from `ledger`)."""
    arms, seeds = list(study["arms"]), study["seeds"]
    summary = {"arms": {}, "model": None, "data": None, "budget": study["budget"],
               "seeds_planned": seeds, "common": study["common"]}
    for arm in arms:
        summary["arms"][arm] = arm_row(arm, runs[arm], study)
    first = next((runs[a][s] for a in arms for s in sorted(runs[a])), None)
    summary["model"], summary["data"] = (first["model"], first["data"]) if first else (None, None)
    budget = study["budget"]["budget_positions"]
    summary["off_budget"] = {arm: row["tokens"] / budget - 1 for arm, row in summary["arms"].items()
                             if arm not in study.get("natural", []) and abs(row["tokens"] / budget - 1) > 0.02}
    finished = [r for by_seed in runs.values() for r in by_seed.values()]
    on_test = bool(finished) and all(r.get("test_loss") is not None for r in finished)
    keys = TEST_METRIC_KEYS if on_test else METRIC_KEYS
    summary["verdict_split"] = "test" if on_test else "dev"
    baselines = [b for b in spec.get("baselines", []) if summary["arms"].get(b, {}).get("blimp")]
    if baselines:
        # among the baselines with the most finished seeds (one with fewer would leave every comparison fewer seed
        # pairs, and its mean rests on fewer seeds): with test losses, the lower mean dev loss (selection reads dev;
        # BLiMP is a verdict metric); a study without them keeps its first rule, the higher mean BLiMP
        most = max(len(summary["arms"][b]["seeds"]) for b in baselines)
        tied = [b for b in baselines if len(summary["arms"][b]["seeds"]) == most]
        best = (min(tied, key=lambda b: mean_sd(summary["arms"][b]["val_loss"])["mean"]) if on_test else
                max(tied, key=lambda b: mean_sd(summary["arms"][b]["blimp"])["mean"]))
        summary["best_baseline"] = best
        summary["vs_best_baseline"] = {arm: paired_with(runs[arm], runs[best], keys) for arm in arms if arm != best}
        summary["contrasts"] = contrasts_of(spec.get("contrasts") or {}, runs, keys)
        # Holm over every comparison of the study (arms x metrics, and the ablations' contrasts): verdicts on it
        family = [c for row in [*summary["vs_best_baseline"].values(), *summary["contrasts"].values()]
                  for name, c in row.items() if name not in ("arm", "reference")]
        summary["family_size"] = adjust_family(family)
        summary["curve_gaps"] = gaps_to(runs, best)
    summary["verdicts"] = verdicts(summary, spec.get("systems", {}))
    summary["end_op_cost"] = end_op_costs(summary["arms"])
    summary["tuning"] = study_tuning(study, ledger)
    summary["tune_spec"] = study.get("tune", {})
    summary["curves"] = curves_of(runs)
    summary["published"] = spec.get("published", {})
    summary["title"] = spec.get("title", DEFAULT_TITLE)
    if study.get("imported"):
        summary["imported"] = {k: v for k, v in study["imported"].items() if k != "by_phenomenon"}
    return summary


def contrasts_of(contrasts: dict, runs: dict[str, dict[int, dict]], keys: dict[str, str]) -> dict:
    """The spec's `contrasts: {LABEL: [ARM, REFERENCE]}`: ARM − REFERENCE on each verdict metric, paired by seed — an
    ablation's own effect (climb_sleep − climb_sleep_no_shrink: the shrink), beside each arm against the baseline."""
    out = {}
    for label, pair in contrasts.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(arm in runs for arm in pair)):
            raise ConfigError(f"contrasts: {label!r} must be [ARM, REFERENCE], two of the study's arms "
                              f"({', '.join(runs)}); got {pair!r}")
        arm, reference = pair
        out[label] = {"arm": arm, "reference": reference, **paired_with(runs[arm], runs[reference], keys)}
    return out


def contrast_lines(summary: dict) -> list[str]:
    """The ablations' contrasts, in the same Holm family as the comparisons against the best baseline."""
    if not summary.get("contrasts"):
        return []
    lines = ["", "## Ablations: paired contrasts (in the same Holm family)", "",
             "| contrast | arm − reference | metric | seeds | mean diff | 95 % CI | p | p (Holm) | MDE | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, row in summary["contrasts"].items():
        for name, cmp in row.items():
            if name in ("arm", "reference") or cmp.get("n", 0) == 0:
                continue
            c = table_cells(cmp, with_method=False)
            lines.append(f"| {label} | {row['arm']} − {row['reference']} | {name} | {len(cmp['seeds'])} | "
                         f"{cmp['mean_diff']:+.4f} | {c['ci']} | {c['p']} | {c['p_holm']} | {c['mde']} | "
                         f"{cmp['verdict']} |")
    return lines


def end_op_costs(arms: dict) -> dict:
    """Per arm scored just before its last sleep's end ops: final − before, paired by seed — what the final end ops
    (CLIMB's last shrink) cost by themselves, with no training after them. Descriptive: a within-arm difference,
    outside the Holm family of the verdicts."""
    out = {}
    for arm, row in arms.items():
        pre = row.get("pre_end_ops") or []
        if not any(pre):
            continue
        out[arm] = {}
        for name, pre_key, higher_is_better in (("test_loss", "test_loss", False), ("blimp", "blimp_overall", True),
                                                ("val_loss", "val_loss", False)):
            final = [f if p else None for f, p in zip(row.get(name, []), pre)]
            before = [p.get(pre_key) if p else None for p in pre]
            if any(f is not None and b is not None for f, b in zip(final, before)):
                out[arm][name] = paired_comparison(final, before, higher_is_better)
    return out


def study_tuning(study: dict, ledger: Path | None) -> dict:
    """Each arm's tuning from the tuning trials' records (`experiments/tuning.choose` reading the ledger)."""
    from sleeptrain.experiments.tuning import TuneSpec, choose

    spec = study.get("tune")
    if not spec or ledger is None:
        return {}
    tune = TuneSpec.from_record(spec)

    def from_ledger(path: Path) -> dict | None:  # choose() asks for EXP/tuning/ARM/tNN/seedK: here LEDGER/...
        record = path.with_suffix(".json")
        return json.loads(record.read_text()) if record.is_file() else None

    out = {}
    for arm in study["arms"]:
        chosen = choose(Path(ledger), tune, arm, from_ledger)
        out[arm] = chosen if chosen is not None else {"unfinished": True}
    return out


def gaps_to(runs: dict[str, dict[int, dict]], best: str) -> dict:
    """Each arm's learning curve against the best baseline's, point by point and paired by seed, with where it leads
    and trails (`experiments/curve_gaps`)."""
    from sleeptrain.experiments.curve_gaps import gaps_against

    return gaps_against({arm: {s: r["milestones"] for s, r in by_seed.items() if r.get("milestones")}
                         for arm, by_seed in runs.items()}, best)


def curves_of(runs: dict) -> dict:
    """The learning curves (mean ± sd per point) from the records' milestone points."""
    from sleeptrain.experiments.curves import aggregate

    have = {arm: [r["milestones"] for r in by_seed.values() if r.get("milestones")] for arm, by_seed in runs.items()}
    return aggregate({arm: c for arm, c in have.items() if c})


def verdicts(summary: dict, systems: dict) -> dict:
    """Per seed system and arm: helps / hurts / no measurable difference, on BLiMP and on validation loss."""
    out = {}
    words = {"better": "helps", "worse": "hurts"}
    for system, arms in systems.items():
        rows = {}
        for arm in arms:
            cmp = summary.get("vs_best_baseline", {}).get(arm)
            if not cmp or cmp["blimp"].get("n", 0) == 0:
                rows[arm] = "not measured yet"
                continue
            parts = [verdict_part(label, cmp[name], words)
                     for name, label in (("blimp", "BLiMP"), ("test_loss", "test loss"), ("val_loss", "validation loss"))
                     if name in cmp]
            rows[arm] = "; ".join(parts) + f" ({cmp['blimp']['n']} seed pairs)"
        out[system] = rows
    return out


def verdict_part(label: str, cmp: dict, words: dict) -> str:
    """One metric's verdict with its number: "BLiMP -0.0280 [-0.0400, -0.0150], p (Holm) 0.005: hurts"; the verdict
    alone where the comparison has no figures (else underpowered / no detectable difference, with its MDE)."""
    v = cmp["verdict"]
    if cmp.get("mean_diff") is None:
        return f"{label}: {words.get(v, v)}"
    cells = table_cells(cmp, with_method=False)
    return f"{label} {cmp['mean_diff']:+.4f} {cells['ci']}, p (Holm) {cells['p_holm']}: {words.get(v, v)}"


def _ms(values: list[float], digits: int = 4) -> str:
    ms = mean_sd(values)
    return "—" if ms.get("mean") is None else f"{ms['mean']:.{digits}f} ± {ms['sd']:.{digits}f}"


def write_study_report(summary: dict, results: Path, command: str) -> Path:
    lines = [f"# {summary.get('title') or DEFAULT_TITLE}", "",
             "Command (resumable; `--report-only` re-writes this from the records of the finished runs): "
             f"`{command}`", ""]
    lines += setting_lines(summary) + arm_table_lines(summary) + pre_end_lines(summary)
    lines += ["", "Wall s: the run's training and final evaluation over all its sessions; runs resumed from a "
              "checkpoint written before 2026-11-29 recorded their last session only and are left out of it. Each "
              "session ran on the machine it was given, sometimes beside other work: a cost indication, not a speed "
              "comparison between arms."]
    lines += per_seed_lines(summary) + budget_note_lines(summary)
    lines += baseline_lines(summary) + contrast_lines(summary) + tuning_and_curve_lines(summary)
    lines += ["", f"## Verdict per seed system (at this scale: {scale_words(summary)})", "",
              "Each: the arm − best-baseline difference, its 95 % interval and Holm-adjusted p, then the verdict.", ""]
    for system, rows in summary["verdicts"].items():
        lines.append(f"- **{system}**: " + "; ".join(f"`{arm}` — {v}" for arm, v in rows.items()))
    if summary["published"]:
        lines += ["", "## Published numbers (not this scale; for orientation)", ""]
        lines += [f"- {k}: {v}" for k, v in summary["published"].items()]
    lines += phenomenon_lines(summary) + plot_lines(summary)
    out = results / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def scale_words(summary: dict) -> str:
    """The scale a verdict holds at, in a few words: parameters, training tokens, token positions a run."""
    m, d, budget = summary.get("model") or {}, summary.get("data") or {}, summary["budget"]
    parts = []
    if m.get("parameters"):
        parts.append(f"{_count(m['parameters'])}-parameter {m.get('objective', 'causal LM')}")
    if d.get("train_tokens"):
        name = Path(d["path"]).name if d.get("path") else "generated data"
        parts.append(f"{name}, {_count(d['train_tokens'])} training tokens")
    parts.append(f"{_count(budget['budget_positions'])} token positions a run")
    return "; ".join(parts)


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 10 ** 6 else f"{n / 1e3:.1f}k" if n >= 10 ** 3 else str(n)


def setting_lines(summary: dict) -> list[str]:
    """The model, the data and the budget, in words."""
    lines = []
    if summary["model"]:
        m, d = summary["model"], summary["data"]
        data_name = Path(d["path"]).name if d.get("path") else f"{d.get('source', 'generated')} data"
        pairs = "BLiMP: all 67 paradigms" if d.get("blimp") else "the generated grammar's minimal pairs"
        lines += [f"Model: {m.get('arch')} {m.get('num_layers')} layers × {m.get('hidden_size')}, "
                  f"{m.get('parameters'):,} parameters ({m.get('non_embedding_parameters'):,} non-embedding), "
                  f"vocabulary {m.get('vocab_size')}, {m.get('objective', 'causal LM')}. Data: {data_name}, "
                  f"{d['train_tokens']:,} training tokens, windows of {d['seq_len']}; {pairs}, "
                  f"{d['blimp_pairs_per_paradigm']} pairs each, scored by "
                  f"{d.get('blimp_scoring', 'sentence log-probability')}.", ""]
    budget = summary["budget"]
    return lines + [f"Budget: {budget['budget_positions']:,} token positions per run (optimizer steps × batch × "
                    "window, replay included); seeds planned: " + str(summary["seeds_planned"]) + ".", ""]


def arm_table_lines(summary: dict) -> list[str]:
    lines = ["| arm | seeds done | BLiMP overall | final val loss (dev) | test loss | token positions (mean) | "
             "wall s |", "|---|---|---|---|---|---|---|"]
    for arm, row in summary["arms"].items():
        lines.append(f"| {arm} | {row['seeds']} | {_ms(row['blimp'])} | {_ms(row['val_loss'])} | "
                     f"{_ms(row.get('test_loss', []))} | {row['tokens']:,} | {_ms(row['seconds'], 0)} |")
    return lines


def per_seed_lines(summary: dict) -> list[str]:
    columns = sorted(set(range(summary["seeds_planned"])).union(*(row["seeds"] for row in summary["arms"].values())))
    # a study judged on the test split has a test loss per run (None where a run has none)
    tested = any(x is not None for row in summary["arms"].values() for x in row.get("test_loss") or [])
    what = "BLiMP / final val loss (dev) / test loss" if tested else "BLiMP / final val loss"
    lines = ["", f"Per seed ({what} / real tokens, i.e. positions minus padding):", "",
             "| arm | " + " | ".join(f"seed {s}" for s in columns) + " |", "|---|" + "---|" * len(columns)]
    for arm, row in summary["arms"].items():
        tests = row.get("test_loss") or [None] * len(row["seeds"])
        done = {seed: (b, v, x, t) for seed, b, v, x, t in zip(row["seeds"], row["blimp"], row["val_loss"], tests,
                                                                row["real_tokens"])}
        cells = [_seed_cell(*done[s], tested) if s in done else "—" for s in columns]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def _seed_cell(blimp: float, dev: float, test: float | None, real: int, tested: bool) -> str:
    figures = [f"{blimp:.3f}", f"{dev:.3f}"] + ([f"{test:.3f}" if test is not None else "—"] if tested else [])
    return " / ".join(figures + [f"{real / 1e6:.2f}M"])


def budget_note_lines(summary: dict) -> list[str]:
    notes = [f"- {arm}: {info['note']}" for arm, info in summary["budget"]["arms"].items() if info.get("note")]
    notes += [f"- {arm}: trained {100 * dev:+.1f} % off the budget (the acceptance allows 2 %)"
              for arm, dev in summary.get("off_budget", {}).items()]
    return ["", "Budget notes:", *notes] if notes else []


def phenomenon_lines(summary: dict) -> list[str]:
    phenomena = sorted({p for row in summary["arms"].values() for p in row["by_phenomenon"]})
    if not phenomena:
        return []
    arms = list(summary["arms"])
    lines = ["", "## BLiMP by phenomenon (mean over finished seeds)", "",
             "| phenomenon | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for p in phenomena:
        cells = [summary["arms"][a]["by_phenomenon"].get(p, {}).get("mean") for a in arms]
        lines.append(f"| {p} | " + " | ".join("—" if c is None else f"{c:.3f}" for c in cells) + " |")
    return lines


def plot_lines(summary: dict) -> list[str]:
    lines = ["", "## Plots", ""]
    finished = sum(len(row["seeds"]) for row in summary["arms"].values())
    curves = sum(row.get("loss_curves", 0) for row in summary["arms"].values())
    if curves < finished:
        lines += [f"loss.png shows the {curves} of {finished} finished runs whose loss curve is in the records."]
    imported = summary.get("imported")
    if imported:
        lines += [f"Imported runs: {imported['note']}" + (f" Their loss curves: ![loss before the records]"
                                                          f"({imported['figure']})" if imported.get("figure") else "")]
    return lines + ["", "![training loss, sleep phases shaded](loss.png)", "",
                    "![BLiMP by phenomenon](blimp_by_phenomenon.png)"]


def baseline_lines(summary: dict) -> list[str]:
    """The paired comparisons against the best baseline, Holm-adjusted, with the MDE."""
    best, lines = summary.get("best_baseline"), []
    rule = ("the lower mean dev loss" if summary.get("verdict_split") == "test" else "the higher mean BLiMP")
    if best:
        lines += ["", f"## Against the best baseline ({best}, the baseline with {rule} among those with the most "
                  f"finished seeds), paired by seed; verdicts on the {summary.get('verdict_split', 'dev')} split",
                  "", "Difference = arm − baseline; p from the two-sided paired t-test, Holm-adjusted over all "
                  f"{summary.get('family_size', 0)} comparisons of this study (verdicts on the adjusted p < 0.05); 95 % "
                  "interval t-based below 5 seed pairs (verdict: underpowered), bootstrap from there on; d_z = mean "
                  "difference / sd of the differences; MDE: the smallest |difference| detectable with 80 % power at "
                  "the family's Bonferroni level.", "",
                  "| arm | metric | seeds | mean diff | 95 % CI | p | p (Holm) | d_z | MDE | verdict |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for arm, row in summary["vs_best_baseline"].items():
            for name, cmp in row.items():
                if cmp.get("n", 0) == 0:
                    continue
                c = table_cells(cmp, with_method=False)
                dz = f"{cmp['effect_size_dz']:+.2f}" if cmp.get("effect_size_dz") is not None else "—"
                lines.append(f"| {arm} | {name} | {len(cmp['seeds'])} | {cmp['mean_diff']:+.4f} | {c['ci']} | {c['p']} | "
                             f"{c['p_holm']} | {dz} | {c['mde']} | {cmp['verdict']} |")
    return lines


def tuning_and_curve_lines(summary: dict) -> list[str]:
    """Each arm's tuning (grid, choice, edges) and the learning-curve table."""
    lines: list[str] = []
    if summary.get("tuning"):
        from sleeptrain.experiments.tuning import tuning_section

        done = {arm: t for arm, t in summary["tuning"].items() if not t.get("unfinished")}
        lines += ["", *tuning_section(done, summary.get("tune_spec", {}))]
        waiting = [arm for arm, t in summary["tuning"].items() if t.get("unfinished")]
        if waiting:
            lines += ["", f"Tuning not finished yet for: {', '.join(waiting)}."]
    if summary.get("curves"):
        from sleeptrain.experiments.curves import milestone_table

        lines += ["", "## Learning curves (test loss and BLiMP on 200 pairs per paradigm, by words seen)", "",
                  "Cells: BLiMP / test loss, mean ± sd over the seeds with the point; ![curves](curves.png)", "",
                  *milestone_table(summary["curves"], list(summary["arms"]))]
    return lines + curve_gap_lines(summary)


def curve_gap_lines(summary: dict) -> list[str]:
    """Does an arm lead early, and where do the curves cross: each arm's gap to the best baseline per point."""
    from sleeptrain.experiments.curve_gaps import gap_lines

    return gap_lines(summary.get("curve_gaps") or {}, summary.get("best_baseline", ""))


def pre_end_lines(summary: dict) -> list[str]:
    """The table of the models just before the last sleep's end ops, against the final ones."""
    from sleeptrain.experiments.curve_gaps import diff_cell

    rows, costs = [], summary.get("end_op_cost", {})
    for arm, row in summary["arms"].items():
        pre = [p for p in row.get("pre_end_ops", []) if p]
        if pre:
            cost = [diff_cell(costs.get(arm, {}).get(name)) for name in ("test_loss", "blimp")]
            rows.append(f"| {arm} | {len(pre)} | {_ms([p['val_loss'] for p in pre])} | "
                        f"{_ms([p.get('test_loss') for p in pre if p.get('test_loss') is not None])} | "
                        f"{_ms([p.get('blimp_overall') for p in pre if p.get('blimp_overall') is not None])} | "
                        f"{cost[0]} | {cost[1]} |")
    if not rows:
        return []
    return ["", "Just before the last sleep's end ops (the final shrink has no training after it to recover), and "
            "what the end ops cost by themselves (final − before, paired by seed, 95 % interval; descriptive, not "
            "in the verdicts' Holm family):", "",
            "| arm | runs | val loss (dev) before | test loss before | BLiMP before | test loss: final − before | "
            "BLiMP: final − before |", "|---|---|---|---|---|---|---|", *rows]


def plot_study(summary: dict, runs: dict[str, dict[int, dict]], results: Path) -> list[Path]:
    """loss.png from the records' curves, blimp_by_phenomenon.png from the summary's per-arm means, curves.png from
    the records' learning-curve points."""
    arms = list(summary["arms"])
    if summary.get("curves"):
        from sleeptrain.experiments.curves import plot_curves

        plot_curves(summary["curves"], arms, results / "curves.png")
    curves = {arm: [runs[arm][s]["curve"] for s in sorted(runs[arm]) if runs[arm][s].get("curve")] for arm in arms}
    phenomena = {arm: {p: [ms["mean"]] for p, ms in row["by_phenomenon"].items() if ms.get("mean") is not None}
                 for arm, row in summary["arms"].items()}
    return plot_arms(curves, {a: v for a, v in phenomena.items() if v}, arms, results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="the study's arms file (a `sleeptrain compare` .yaml with study keys)")
    parser.add_argument("--dir", help="experiment folder for the run folders (resumable); needed to train")
    parser.add_argument("--results", required=True, help="folder for summary.json, report.md, the plots and records/")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the recorded runs")
    parser.add_argument("overrides", nargs="*", help="compare words added to the spec (seeds=N, key=value)")
    args = parser.parse_args()
    results = Path(args.results)
    ledger = results / "records"
    exp_dir = Path(args.dir) if args.dir else None
    try:
        spec = load_yaml(Path(args.spec), "spec")
        check_arms_file_keys(Path(args.spec), spec, SPEC_KEYS)
        if exp_dir is not None and (exp_dir / "experiment.json").is_file():
            sync_ledger(ledger, exp_dir)  # runs finished before the records existed, or while they were not written
        if not args.report_only:
            if exp_dir is None:
                raise ConfigError("--dir: needed to train (the folder for the run folders, e.g. experiments/lm-study)")
            exp = parse_args([args.spec, f"dir={exp_dir}", *args.overrides], extra_file_keys=SPEC_KEYS)
            if TUNING in {a.name for a in exp.arms}:
                raise ConfigError(f"arms: {TUNING!r} is the records' folder of the tuning runs; rename that arm")
            run_compare(exp, recorded=recorded_runs(ledger), record_of=ledger_reader(ledger, exp_dir),
                        on_start=lambda record: open_ledger(ledger, {k: record[k] for k in STUDY_KEYS if k in record}),
                        on_finished=lambda label, seed, run_dir: record_run(ledger, label, seed, run_dir))
        study, runs = read_ledger(ledger)
        summary = study_summary(study, runs, spec, ledger)
    except SleeptrainError as err:
        print(f"lm_study: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C (or SIGINT from a scheduler): every finished run is recorded already
        print(f"lm_study: interrupted; the finished runs are recorded in {ledger} and the run in progress resumes "
              "from its last checkpoint in --dir: run the same command to continue", file=sys.stderr)
        return 130
    (results / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_study(summary, runs, results)
    # the training command (what a reader re-runs), also when this was --report-only
    command = " ".join(["tools/lm_study.py", args.spec, "--dir", args.dir or "DIR", "--results", args.results,
                        *args.overrides])
    print(f"report: {write_study_report(summary, results, command)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
