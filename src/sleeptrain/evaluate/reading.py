"""The BabyLM pipeline's reading task (`evaluation_pipeline/reading/`): how much a model's surprisal adds to the
prediction of human reading times and ERPs, as the pipeline computes it.

Data: `reading/reading_data.csv` (full_eval and fast_eval): per row the context `item`, the next `word`, the previous
row's (`prev_item`, `prev_word`), human measures (eye tracking RTfirstfix, RTfirstpass, RTgopast, RTrightbound;
self-paced reading time; ERPs ELAN, LAN, N400, P600, EPNP, PNP) and the baseline predictors (Subtlex_log10,
length, context_length, prev_length).

Surprisal (`get_p2`, causal): the model reads `tokenizer(item)` — with the tokenizer's own special tokens — and the
prediction at its *last* position is P(first token of `tokenizer(word, add_special_tokens=False)`); a word of several
tokens multiplies in P(each next token) read after the context extended by the decoded tokens so far. So a tokenizer
that appends an end token makes the model predict the word after the end of a document: sleeptrain's causal
tokenizers add `<s>` only (lm/hf_folder, data/tokenizer); a folder whose tokenizer appends one is scored as the
pipeline would score it, with a warning. Masked LMs (`mlm`): `item` + three mask tokens, the prediction at the first.

Regressions (statsmodels OLS, the pipeline's formulas): per measure a baseline on the predictors and their pairwise
interactions, then the same plus surprisal; ΔR². EYE TRACKING SCORE: the mean over the four eye-tracking measures of
ΔR² / (1 − R²_baseline) × 100; SELF-PACED READING SCORE: the same for self-paced reading time in the spillover
models (the previous word's length and surprisal added, with every pairwise interaction).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from sleeptrain.errors import DataError

MEASURES = ["RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound", "self_paced_reading_time", "ELAN", "LAN", "N400",
            "P600", "EPNP", "PNP"]
BASE = ["Subtlex_log10", "length", "context_length"]
SPILL = BASE + ["prev_length", "prev_pred"]
MASKS_APPENDED = 3  # the pipeline's --number_of_mask_tokens_to_append


def read_reading(path: Path):
    import pandas as pd

    if not path.is_file():
        raise DataError(f"reading: no file {path}")
    df = pd.read_csv(path, dtype={"item": str})
    missing = [c for c in ["item", "word", "prev_item", "prev_word", *MEASURES, *BASE, "prev_length"]
               if c not in df.columns]
    if missing:
        raise DataError(f"{path}: not the pipeline's reading_data.csv (missing columns {', '.join(missing)})")
    df["item"] = df["item"].fillna("None")
    return df


@torch.no_grad()
def next_token_probs(model, tokenizer, text: str, masked: bool, mntp: bool = False) -> torch.Tensor:
    """P(next token) after `text` as the pipeline reads it (mntp: one position earlier than mlm)."""
    device = next(model.parameters()).device
    if masked:
        ids = tokenizer(text + tokenizer.mask_token * MASKS_APPENDED, return_tensors="pt")["input_ids"]
        at = -MASKS_APPENDED if ids[0, -1] == tokenizer.mask_token_id else -(MASKS_APPENDED + 1)
        at -= 1 if mntp else 0
    else:
        ids, at = tokenizer(text, return_tensors="pt")["input_ids"], -1
    logits = model(input_ids=ids.to(device)).logits[0, at].float().cpu()
    return torch.softmax(logits, dim=-1)


def word_probability(model, tokenizer, context: str, word: str, masked: bool, mntp: bool = False) -> float:
    """The pipeline's get_p2: P(word | context), a multi-token word token by token on the growing text. As there, a
    continuation token is looked up again from its decoded text (`get_p` re-tokenizes it and takes the first id):
    with a prefix-space tokenizer that is the id of the piece *with* a leading space, not the token itself — a quirk
    of the official scorer, kept so the scores are the pipeline's (docs/EVALUATION.md)."""
    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    p, text = 1.0, context
    for i, token in enumerate(target):
        piece = tokenizer.decode(token)
        scored = token if i == 0 else tokenizer(piece, add_special_tokens=False)["input_ids"][0]
        p *= float(next_token_probs(model, tokenizer, text, masked, mntp)[scored])
        text = text + piece
    return p


def warn_if_end_token(tokenizer, masked: bool) -> str | None:
    """A causal tokenizer that appends its end token makes every reading prediction follow an end of document."""
    if masked:
        return None
    ids = tokenizer("the dog")["input_ids"]
    if tokenizer.eos_token_id is not None and ids and ids[-1] == tokenizer.eos_token_id:
        note = ("babylm: warning: reading: the tokenizer appends its end token to every text, so the prediction read "
                "at the last position (as the pipeline reads it) follows an end of document, not the sentence; "
                "`sleeptrain export` writes tokenizers without it")
        print(note, file=sys.stderr)
        return note
    return None


def surprisals(model, tokenizer, df, masked: bool, progress: bool = False,
               mntp: bool = False) -> tuple[list[float], list[float]]:
    from sleeptrain.evaluate.scoring import batch_progress

    pred, prev = [], []
    for _, row in batch_progress(df.iterrows(), progress, f"reading: {len(df):,} words"):
        pred.append(-math.log(word_probability(model, tokenizer, row["item"], row["word"], masked, mntp)))
        prev.append(-math.log(word_probability(model, tokenizer, row["prev_item"], row["prev_word"], masked, mntp))
                    if isinstance(row["prev_item"], str) else float("nan"))
    return pred, prev


def _interactions(names: list[str]) -> list[str]:
    return [f"{a}:{b}" for i, a in enumerate(names) for b in names[i + 1:]]


def fit(df, measure: str, predictors: list[str]) -> dict:
    """Baseline OLS on `predictors` and their pairwise interactions, then + surprisal (`pred`)."""
    import statsmodels.formula.api as smf

    rhs = " + ".join(predictors + _interactions(predictors))
    base = smf.ols(f"{measure} ~ {rhs}", data=df[[measure, *predictors]].dropna()).fit()
    full = smf.ols(f"{measure} ~ {rhs} + pred", data=df[["pred", measure, *predictors]].dropna()).fit()
    return {"Predicted variable": measure, "Coefficient": float(full.params["pred"]),
            "Number of standard deviations": float(full.tvalues["pred"]), "P-value": float(full.pvalues["pred"]),
            "R2": float(full.rsquared), "Change in R2 from baseline": float(full.rsquared - base.rsquared),
            "AIC": float(full.aic), "Change in AIC from baseline": float(full.aic - base.aic),
            "_normalised": float((full.rsquared - base.rsquared) / (1 - base.rsquared) * 100)}


def reading_scores(df) -> dict:
    """The pipeline's regressions and its two scores (df has `pred` and `prev_pred`)."""
    plain = [fit(df, m, BASE) for m in MEASURES]
    spill = [fit(df, m, SPILL) for m in MEASURES]
    eye = float(np.mean([r["_normalised"] for r in plain if "RT" in r["Predicted variable"]]))
    spr = next(r["_normalised"] for r in spill if "self" in r["Predicted variable"])
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]  # noqa: E731
    correlations = df[["pred", *MEASURES]].corr()["pred"]
    return {"eye_tracking_score": eye, "self_paced_reading_score": float(spr), "predictive_power": strip(plain),
            "predictive_power_spillover": strip(spill),
            "correlations": {m: float(correlations[m]) for m in MEASURES}}
