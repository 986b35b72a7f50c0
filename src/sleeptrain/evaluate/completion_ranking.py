"""Completion ranking as the BabyLM pipeline scores it (`sentence_zero_shot/dataset.py`, `compute_results.py`).

Each candidate sentence is tokenized by the model's own tokenizer, special tokens as its post-processor adds them
(the pipeline adds no BOS itself). The scored span is the completion's: every token whose character offsets end
after the completion's start (`len(sentence) - len(completion)`, plus the first token's start offset for causal
LMs) — special tokens have empty offsets, so they are never scored.

- causal: log P(token | everything before it), summed over the span, from one forward pass per candidate (inputs
  `tokens[:-1]`, targets `tokens[1:]`: a first token with no BOS before it cannot be scored, as in the pipeline);
- masked (`mlm`): each span token masked in turn in the full sentence, its log-probability at its own position,
  summed (PLL over the completion); `mntp` (masked next-token prediction, e.g. GPT-BERT): the same masked copies,
  the masked token's log-probability read one position earlier (the first token is scored only when the tokenizer
  has a BOS or CLS token before it);

at every temperature T (logits / T). The prediction is the highest-scoring candidate, the first one on a tie
(`torch.max`): with the correct candidate listed first, the pipeline counts a tie as correct (`ties=correct`);
`ties=half` gives a tie 1/m of a point (m tied candidates). Accuracy in % per value of every metadata key, the
average over UIDs (entity tracking: over the regular / ambiref / move_contents splits of them); WUG: Spearman's ρ
between the first candidate's softmax probability over the candidates and the human ratio. The best temperature is
the one with the highest average (the first on a tie), as the pipeline picks it — on the evaluation data itself.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import torch

from sleeptrain.evaluate.babylm_data import Dataset, Item
from sleeptrain.evaluate.scoring import _device_of, _pad, batch_progress

ENTITY_SPLITS = ("regular", "ambiref", "move_contents")


def span_tokens(tokenizer, sentence: str, completion: str, causal: bool) -> tuple[list[int], list[int]]:
    """(token ids, 1 where the token belongs to the completion's span), as the pipeline builds them."""
    enc = tokenizer(sentence, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    start = len(sentence) - len(completion) + (offsets[0][0] if causal and offsets else 0)
    return ids, [1 if end > start else 0 for _, end in offsets]


def _batches_by_length(padded: np.ndarray, lengths: np.ndarray, batch_size: int, device, progress: bool, desc: str):
    """(row indices, ids, attention mask) of batches of similar length, longest first, cut to each batch's width."""
    order = np.argsort(-lengths, kind="stable")
    for i in batch_progress(range(0, len(order), batch_size), progress, desc):
        batch = order[i:i + batch_size]
        width = int(lengths[batch].max())
        attention = (np.arange(width)[None, :] < lengths[batch][:, None]).astype(np.int64)
        yield batch, torch.from_numpy(padded[batch, :width]).to(device), torch.from_numpy(attention).to(device)


@torch.no_grad()
def causal_scores(model, tokenizer, texts: list[tuple[str, str]], temperatures: list[float], batch_size: int,
                  progress: bool = False, first_offset: bool = True) -> dict[float, np.ndarray]:
    """Summed span log-probabilities of every (sentence, completion), per temperature. `first_offset=False`: the
    span starts at `len(sentence) - len(completion)` exactly (the pipeline's AoA_word rule)."""
    device = _device_of(model)
    encoded = [span_tokens(tokenizer, s, c, causal=first_offset) for s, c in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    ids, lengths = _pad([e[0] for e in encoded], pad)
    masks, _ = _pad([e[1] for e in encoded], 0)
    out = {t: np.zeros(len(texts)) for t in temperatures}
    for batch, x, attention in _batches_by_length(ids, lengths, batch_size, device, progress,
                                                  f"scoring {len(texts):,} candidates"):
        logits = model(input_ids=x[:, :-1], attention_mask=attention[:, :-1]).logits.float()
        span = torch.from_numpy(masks[batch, 1:x.shape[1]]).to(device)
        for t in temperatures:
            logp = torch.log_softmax(logits / t, dim=-1).gather(-1, x[:, 1:, None])[..., 0]
            out[t][batch] = (logp * span).sum(dim=1).cpu().numpy()  # float32, as the pipeline sums
    return out


@torch.no_grad()
def masked_scores(model, tokenizer, texts: list[tuple[str, str]], temperatures: list[float], batch_size: int,
                  progress: bool = False, mntp: bool = False) -> dict[float, np.ndarray]:
    """PLL of every completion span (each span token masked in turn), per temperature; `mntp`: read one earlier."""
    device, mask_id = _device_of(model), tokenizer.mask_token_id
    if mask_id is None:
        raise ValueError("the tokenizer has no mask token, which masked-LM scoring needs")
    first_ok = not mntp or tokenizer.cls_token_id is not None or tokenizer.bos_token_id is not None
    copies, owner, position, target = [], [], [], []
    for n, (s, c) in enumerate(texts):
        ids, span = span_tokens(tokenizer, s, c, causal=False)
        for i in (j for j, inside in enumerate(span) if inside and (j != 0 or first_ok)):
            masked = list(ids)
            masked[i] = mask_id
            copies.append(masked), owner.append(n), position.append(i - 1 if mntp else i), target.append(ids[i])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    padded, lengths = _pad(copies, pad) if copies else (np.zeros((0, 0), np.int64), np.zeros(0, np.int64))
    owner_a, pos_a, tgt_a = np.array(owner, np.int64), np.array(position, np.int64), np.array(target, np.int64)
    per_copy = {t: torch.zeros(len(copies)) for t in temperatures}  # float32, as the pipeline keeps them
    for batch, x, attention in _batches_by_length(padded, lengths, batch_size, device, progress,
                                                  f"scoring {len(copies):,} masked copies"):
        logits = model(input_ids=x, attention_mask=attention).logits.float()
        at = logits[torch.arange(len(batch), device=device), torch.from_numpy(pos_a[batch]).to(device)]
        for t in temperatures:
            logp = torch.log_softmax(at / t, dim=-1).gather(-1, torch.from_numpy(tgt_a[batch]).to(device)[:, None])
            per_copy[t][torch.from_numpy(batch)] = logp[:, 0].cpu()
    # each sentence's copies are contiguous: summed in float32 in token order, as the pipeline's torch.sum (near-ties
    # of order-insensitive models resolve like its scores do, not by a more exact sum)
    bounds = np.searchsorted(owner_a, np.arange(len(texts) + 1))
    return {t: np.array([float(torch.sum(v[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]) for t, v in per_copy.items()}


def score_dataset(model, tokenizer, masked: bool, data: Dataset, temperatures: list[float], batch_size: int,
                  progress: bool = False, mntp: bool = False) -> dict[float, list[np.ndarray]]:
    """temperature -> per item, the scores of its candidates (`mntp`: a masked model read as the pipeline's mntp)."""
    texts = [(s, c) for item in data.items for s, c in zip(item.sentences, item.completions)]
    if masked:
        flat = masked_scores(model, tokenizer, texts, temperatures, batch_size, progress, mntp=mntp)
    else:
        flat = causal_scores(model, tokenizer, texts, temperatures, batch_size, progress)
    out = {}
    for t, values in flat.items():
        cuts = np.cumsum([len(item.sentences) for item in data.items])[:-1]
        out[t] = np.split(values, cuts)
    return out


def rank(task: str, items: list[Item], scores: list[np.ndarray], ties: str) -> dict:
    """Accuracies (or ρ), the average, the tie rate and the predictions at one temperature."""
    from scipy.stats import spearmanr

    predictions: dict[str, list] = defaultdict(list)
    total, correct = defaultdict(Counter), defaultdict(Counter)
    tied, probs = 0, []
    for item, s in zip(items, scores):
        chosen = int(np.argmax(s))  # the first maximum, as torch.max
        best = np.flatnonzero(s == s[chosen])
        tied += best.size > 1
        credit = float(chosen == item.label) if ties == "correct" or best.size == 1 else (
            1.0 / best.size if item.label in best else 0.0)
        for key, value in item.metadata.items():
            total[key][value] += 1
            correct[key][value] += credit
        pred = {"id": f"{item.uid}_{len(predictions[item.uid])}",
                "pred": (item.sentences if task == "comps" else item.completions)[chosen]}
        if item.ratio is not None:
            p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            probs.append(float(p[0]))
            pred["prob"] = probs[-1]
        predictions[item.uid].append(pred)
    if task in ("wug_adj", "wug_past"):
        import warnings

        with warnings.catch_warnings():  # a constant input (e.g. one item, or equal ratios): ρ is undefined -> NaN
            warnings.simplefilter("ignore")
            rho = float(spearmanr(probs, [item.ratio for item in items])[0])
        accuracies, average = {"UID": {"avg": rho}}, rho
    else:
        accuracies = {key: {v: 100.0 * correct[key][v] / total[key][v] for v in total[key]} for key in total}
        average = _average(task, accuracies)
    return {"accuracies": accuracies, "average": average, "tie_rate": tied / max(1, len(items)),
            "predictions": {uid: {"predictions": p} for uid, p in predictions.items()}}


def _average(task: str, accuracies: dict) -> float:
    uids = accuracies.get("UID", {})
    if task != "entity_tracking":
        return sum(uids.values()) / len(uids) if uids else float("nan")
    means = []
    for split in ENTITY_SPLITS:
        keys = [k for k in list(uids) if k.startswith(split)]
        if keys:
            uids[split] = sum(uids[k] for k in keys) / len(keys)
            means.append(uids[split])
    return sum(means) / len(means) if means else float("nan")


def best_temperature(by_temperature: dict[float, dict]) -> float:
    """The temperature with the highest average, the first on a tie (the pipeline's `acc > best_acc`)."""
    best_t, best = None, -float("inf")
    for t, result in by_temperature.items():
        if result["average"] > best:
            best_t, best = t, result["average"]
    return best_t if best_t is not None else next(iter(by_temperature))


def report_text(task: str, temperature: float, result: dict) -> str:
    """best_temperature_report.txt, laid out as the pipeline's create_evaluation_report."""
    metric = "SPEARMAN'S RHO" if "wug" in task else "ACCURACY"
    lines = [f"TEMPERATURE: {temperature:.2f}", ""]
    for domain, accuracy in result["accuracies"].items():
        lines.append(f"### {domain.upper()} {metric}")
        lines += [f"{sub}: {acc:.2f}" for sub, acc in accuracy.items()]
        lines.append("")
    return "\n".join(lines + [f"### AVERAGE {metric}", f"{result['average']:.2f}", ""]) + "\n"
