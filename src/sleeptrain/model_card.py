"""The model card (README.md) `sleeptrain export` puts on every branch of a model repository.

It is written from the run's own records only — config.yaml (model, schedule, sleep ops, data), run.json (each
training source with its words), summary.json (words seen, steps, final dev/test loss, BLiMP) and, for a `chck_*`
revision, the curve scores beside it (`chck_*/eval/milestone.json`, when `compare` scored it) — so it says nothing
the run did not record: a figure that is missing is left out, not guessed. The licence is the exporter's to choose
(`--license`, a Hub licence id); without one the card says `unknown` and asks for one, as the training data's
licences decide what may be shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def model_card(run_dir: Path, branch: str, branches: list[str], folder: Path | None = None,
               license_id: str = "unknown") -> str:
    """README.md for revision `branch` (model folder `folder`) of the repository made from `run_dir`."""
    run_dir = Path(run_dir)
    cfg, run, summary = _read_yaml(run_dir / "config.yaml"), _read_json(run_dir / "run.json"), _read_json(
        run_dir / "summary.json")
    milestone = _read_json(folder / "eval" / "milestone.json") if folder is not None else {}
    front = (f"---\nlibrary_name: transformers\nlicense: {license_id}\ntags: [babylm, sleeptrain, "
             f"sleep-inspired-training]\n---\n\n")
    lines = [f"# {run_dir.name} — `{branch}`", "", revision_line(branch, summary), ""]
    lines += ["## Training", ""] + training_lines(cfg, run, summary) + [""]
    results = results_lines(branch, summary, milestone)
    if results:
        lines += ["## Results", ""] + results + [""]
    lines += ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer  # "
              "AutoModelForMaskedLM for a masked LM",
              f"model = AutoModelForCausalLM.from_pretrained(REPO, revision=\"{branch}\")",
              f"tokenizer = AutoTokenizer.from_pretrained(REPO, revision=\"{branch}\")", "```", ""]
    lines += [f"Revisions of this repository, in order of words seen: {', '.join(f'`{b}`' for b in branches)}.", ""]
    lines += ["## Licence", "", licence_line(license_id), ""]
    if cfg:
        lines += ["## Configuration", "", "The run's full config.yaml (absolute paths shortened to `.../NAME`: a card "
                  "does not publish the folders of the machine it was trained on):", "", "```yaml",
                  yaml.safe_dump(without_local_paths(cfg), sort_keys=False).rstrip(), "```", ""]
    return front + "\n".join(lines)


def without_local_paths(value):
    """`value` with every absolute path string replaced by `.../` + its last component."""
    if isinstance(value, dict):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_local_paths(v) for v in value]
    if isinstance(value, str) and value.startswith("/") and len(value) > 1:
        return ".../" + Path(value).name
    return value


def revision_line(branch: str, summary: dict) -> str:
    if branch == "main":
        words = summary.get("words_seen")
        seen = f" ({words:,} words of training text seen)" if isinstance(words, int) else ""
        return f"Trained with sleeptrain and laid out by `sleeptrain export`. This revision is the final model{seen}."
    return (f"Trained with sleeptrain and laid out by `sleeptrain export`. This revision is the word-count checkpoint "
            f"after {branch[5:]} words of training text (BabyLM's `chck_*` naming).")


def training_lines(cfg: dict, run: dict, summary: dict) -> list[str]:
    model, schedule, data, sleep = (cfg.get(k, {}) or {} for k in ("model", "schedule", "data", "sleep"))
    out = []
    if model:
        params = (summary.get("parameters") or {}).get("total")
        out.append(f"- Model: {model.get('arch')}, {model.get('num_layers')} layers x {model.get('hidden_size')}, "
                   f"{model.get('num_heads')} heads" + (f", {params:,} parameters" if isinstance(params, int) else ""))
    if schedule:
        ops = sleep.get("ops") or []
        out.append(f"- Sleep schedule: `{schedule.get('name')}`; sleep ops: "
                   + (", ".join(f"`{op}`" for op in ops) if ops else "none") + " (docs/SCHEDULES.md of sleeptrain)")
    if data:
        where = data.get("path") or data.get("source")
        out.append(f"- Data: {data.get('source')} ({Path(str(where)).name}), windows of {data.get('seq_len')} tokens")
    for name, figures in ((run.get("sources") or {}).get("train") or {}).items():
        out.append(f"  - train source `{name}`: {figures.get('words', 0):,} words, {figures.get('tokens', 0):,} tokens")
    if summary:
        out.append(f"- Steps: {summary.get('steps')}, tokens: {summary.get('tokens'):,}"
                   if isinstance(summary.get("tokens"), int) else f"- Steps: {summary.get('steps')}")
    if run.get("code_version") or run.get("sleeptrain"):
        out.append(f"- sleeptrain: {run.get('sleeptrain') or ''} {run.get('code_version') or ''}".rstrip())
    return out or ["- (the run's config.yaml, run.json and summary.json were not found)"]


def results_lines(branch: str, summary: dict, milestone: dict) -> list[str]:
    if branch != "main":
        out = []
        if milestone.get("test_loss") is not None:
            out.append(f"- Test loss: {milestone['test_loss']:.4f}")
        if milestone.get("blimp") is not None:
            out.append(f"- Minimal-pair accuracy: {milestone['blimp']:.4f} ({milestone.get('pairs'):,} pairs, at most "
                       f"{milestone.get('max_pairs_per_paradigm')} per paradigm)")
        return out
    figures = (("final_val_loss", "Dev loss"), ("final_test_loss", "Test loss"), ("dev_ppl", "Dev perplexity"),
               ("blimp_overall", "Minimal-pair accuracy (the run's final evaluation)"))
    return [f"- {label}: {summary[key]:.4f}" for key, label in figures if isinstance(summary.get(key), (int, float))]


def licence_line(license_id: str) -> str:
    if license_id == "unknown":
        return ("Not set: the licence of a model trained on a corpus follows that corpus's licences; choose one and "
                "export again with `--license ID` (a Hugging Face licence identifier, e.g. `mit`, `cc-by-4.0`).")
    return f"`{license_id}` (set by the exporter with `--license`)."
