"""AoA: word surprisal over a run's word checkpoints, and how well its learning curves match children's ages of
acquisition — as the BabyLM pipeline computes both (`babylm/evaluation-pipeline-2025`: `AoA_word/` writes the
surprisals, `utils.AoAEvaluator` scores them; Chang & Bergen 2022, TACL).

Data (`evaluation_data/full_eval/aoa/`, from OSF): `cdi_childes.json` — {word: [{"context": ...}, ...]} (words of
one character are left out, as `load_eval` does) — and `cdi_human.csv` — a `word` column and one column per age in
months, "16" ... "30", the proportion of children who produce the word.

Surprisal (`StepSurprisalExtractor`, its defaults: the context is used, not BOS only): the text is
`context.strip() + " " + word`, tokenized by the checkpoint's own tokenizer with its special tokens; the word's span
is every token whose offsets end after `len(text) - len(word)`; causal: −Σ log P(token | before) over the span;
masked (`mlm`): each span token masked in turn, read at its position; `mntp`: read one position earlier. Natural
log, summed in float32, one value per (checkpoint, word, context) — the rows of `surprisal.json`. Batches of similar
length here, one text per forward there: values agree to float32 rounding (~1e-6).

Score (`AoAEvaluator.compute_curve_fitness`, followed as written): per word, every (checkpoint words, surprisal)
point over all its contexts; a sigmoid a / (1 + exp(−b (x − c))) + d fitted (scipy `curve_fit`, maxfev 1000) to
−surprisal against log10(words + 1); the model's AoA is the log10 word count where the fit crosses the surprisal half
way between "chance" and the word's lowest surprisal — chance is log2(300,000) although the surprisals are in nats
(the pipeline's mix of units, kept so scores compare); words whose fit fails or crosses outside the checkpoints are
left out. The child's AoA: the same sigmoid fitted (bounded) to the CDI proportions over age, its 50 % crossing.
The score is Pearson's r between the two over the words both give (0.0 with fewer than 3, as there).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np

from sleeptrain.errors import DataError

WORDS_FILES = ("aoa/cdi_childes.json", "cdi_childes/cdi_childes.json")  # eval_aoa.sh's default, then run.py's
HUMAN_FILE = "aoa/cdi_human.csv"
CHANCE_VOCAB = 300_000
CHECKPOINT = re.compile(r"^chck_(\d+)([KM]?)$")
TRACK_REVISIONS = {  # collate_preds.py: the checkpoints a submission must have AoA rows for
    "strict-small": [f"chck_{i}M" for i in range(1, 10)] + [f"chck_{i * 10}M" for i in range(1, 11)],
    "strict": [f"chck_{i}M" for i in range(1, 10)] + [f"chck_{i * 10}M" for i in range(1, 10)]
              + [f"chck_{i * 100}M" for i in range(1, 11)],
}


def find_words_file(root: Path) -> Path | None:
    return next((root / name for name in WORDS_FILES if (root / name).is_file()), None)


def read_words(path: Path, min_context: int = 0) -> list[tuple[str, list[str]]]:
    """(word, its contexts) in file order: words longer than one character with at least `min_context` contexts."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return [(w, [c["context"] for c in rows]) for w, rows in data.items()
                if len(w) > 1 and len(rows) >= min_context]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not the pipeline's cdi_childes.json ({{word: [{{'context': ...}}, ...]}}): "
                        f"{type(exc).__name__}: {exc}") from None


def word_count(name: str) -> int:
    """chck_1M -> 1,000,000; chck_500K -> 500,000."""
    number, unit = CHECKPOINT.match(name).groups()
    return int(number) * {"": 1, "K": 1_000, "M": 1_000_000}[unit]


def checkpoint_folders(run_dir: Path) -> list[tuple[str, Path]]:
    """(revision, folder) of every RUN_DIR/chck_<N> model folder, in order of words seen."""
    found = [(p.name, p) for p in Path(run_dir).iterdir() if p.is_dir() and CHECKPOINT.match(p.name)
             and (p / "config.json").is_file()]
    return sorted(found, key=lambda x: word_count(x[0]))


def surprisals(model, tokenizer, masked: bool, words: list[tuple[str, list[str]]], batch_size: int,
               progress: bool = False, mntp: bool = False) -> np.ndarray:
    """Surprisal (nats) of every (word, context), flattened in file order."""
    from sleeptrain.evaluate.completion_ranking import causal_scores, masked_scores

    texts = [(context.strip() + " " + word.strip(), word.strip()) for word, contexts in words for context in contexts]
    if masked:
        scores = masked_scores(model, tokenizer, texts, [1.0], batch_size, progress, mntp=mntp)
    else:
        scores = causal_scores(model, tokenizer, texts, [1.0], batch_size, progress, first_offset=False)
    return -scores[1.0]


def surprisal_rows(revision: str, words: list[tuple[str, list[str]]], values: np.ndarray) -> list[dict]:
    """The rows `surprisal.json` holds for one checkpoint."""
    rows, k = [], 0
    for word, contexts in words:
        for i, context in enumerate(contexts):
            rows.append({"step": revision, "word_count": word_count(revision), "target_word": word,
                         "context_id": i, "context": context, "surprisal": float(values[k])})
            k += 1
    return rows


def surprisal_file(model_name: str, rows: list[dict]) -> dict:
    steps = len({r["step"] for r in rows})
    return {"metadata": {"model_name": model_name, "use_bos_only": False, "total_steps": steps,
                         "completed_steps": steps}, "results": rows}


def sigmoid(x, a, b, c, d):
    return a / (1 + np.exp(-b * (x - c))) + d


def _fit(x, y, p0, bounds=(-np.inf, np.inf)):
    from scipy.optimize import curve_fit

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return curve_fit(sigmoid, x, y, p0=p0, bounds=bounds, maxfev=1000)[0]
    except (RuntimeError, ValueError, TypeError):  # no convergence, bad values, fewer points than parameters
        return None


def _crossing(params, y):
    """x where the fitted sigmoid reaches y, or None (a, b must be positive and y inside (d, a + d))."""
    a, b, c, d = params
    if b <= 0 or a <= 0 or y <= d or y >= a + d:
        return None
    return c - np.log(a / (y - d) - 1) / b


def child_aoa(ages: np.ndarray, proportions: np.ndarray, threshold: float = 0.5) -> float | None:
    keep = ~np.isnan(proportions)
    ages, proportions = ages[keep], proportions[keep]
    if len(proportions) < 3:
        return None
    params = _fit(ages, proportions, [1.0, 0.1, np.mean(ages), 0.0], ([0, 0, ages[0], -0.5], [2.0, 1.0, ages[-1], 0.5]))
    aoa = None if params is None else _crossing(params, threshold)
    return None if aoa is None or aoa < ages[0] or aoa > ages[-1] else float(aoa)


def model_aoa(values: list[float], steps: list[float], threshold: float = 0.5) -> float | None:
    """log10 of the word count at which the word is learnt, or None."""
    if len(values) < 3:
        return None
    steps_a, values_a = np.array(steps, dtype=float), np.array(values, dtype=float)
    keep = ~np.isnan(values_a)
    if not keep.any():
        return None
    steps_a, values_a = steps_a[keep], values_a[keep]
    chance = np.log2(CHANCE_VOCAB)
    target = chance - threshold * (chance - values_a.min())
    x, y = np.log10(steps_a + 1), -values_a
    params = _fit(x, y, [y.max() - y.min(), 1.0, x.mean(), y.min()])
    log_aoa = None if params is None else _crossing(params, -target)
    if log_aoa is None or not steps_a[0] <= 10 ** log_aoa - 1 <= steps_a[-1]:
        return None
    return float(log_aoa)


def step_number(name) -> float | None:
    """The pipeline's reading of a revision name: chck_10M -> 1e7 (the first number, K/M/B after it)."""
    match = re.search(r"(\d+(?:\.\d+)?)\s*([KMB]?)", str(name), re.IGNORECASE)
    if not match:
        return None
    return float(match.group(1)) * {"K": 1e3, "M": 1e6, "B": 1e9}.get(match.group(2).upper(), 1)


def curve_fitness(rows: list[dict], human_csv: Path) -> dict:
    """Pearson's r between the model's and the children's ages of acquisition, with what it rests on."""
    import pandas as pd
    from scipy.stats import pearsonr

    cdi = pd.read_csv(human_csv)
    ages = [str(a) for a in range(16, 31) if str(a) in cdi.columns]
    if "word" not in cdi.columns or not ages:
        raise DataError(f"{human_csv}: needs a 'word' column and age columns '16' ... '30' (the pipeline's "
                        "cdi_human.csv)")
    curves: dict[str, tuple[list, list]] = {}
    for r in rows:
        steps, values = curves.setdefault(r["target_word"], ([], []))
        number = step_number(r["step"])
        if number is not None:
            steps.append(number), values.append(float(r["surprisal"]))
    age_values, table = np.array([int(a) for a in ages]), cdi[ages].to_numpy(dtype=float)
    words, model, child = [], [], []
    for word, (steps, values) in curves.items():
        match = np.where(cdi["word"].to_numpy() == word)[0]
        if not len(match):
            continue
        c = child_aoa(age_values, table[match[0]])
        m = None if c is None else model_aoa(values, steps)
        if m is not None:
            words.append(word), model.append(m), child.append(c)
    if len(words) < 3:
        return {"curve_fitness": 0.0, "n_words": len(words), "words": words, "model_aoa": model, "child_aoa": child}
    r, p = pearsonr(model, child)
    return {"curve_fitness": float(r), "p_value": float(p), "n_words": len(words), "words": words,
            "model_aoa": model, "child_aoa": child}
