"""The BabyLM pipeline's AoA task (issue 39): surprisals over a run's word checkpoints against a plain per-text
reference, the pipeline's surprisal.json, and its curve fitting checked by hand on scripted curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sleeptrain.config import ModelConfig
from sleeptrain.data.grammar import generate_splits
from sleeptrain.data.tokenizer import train_bpe, use_causal_template
from sleeptrain.evaluate.aoa import (CHANCE_VOCAB, child_aoa, curve_fitness, model_aoa, read_words, sigmoid,
                                     step_number, surprisals, word_count)
from sleeptrain.evaluate.scoring import naive_causal_logprob
from sleeptrain.lm.models import build_model, special_token_ids
from sleeptrain.lm.run_setup import save_final
from test_babylm_suite import fake_evaluation_data, reference

REVISIONS = [f"chck_{i}M" for i in range(1, 10)] + [f"chck_{i * 10}M" for i in range(1, 11)]
WORDS = {"dog": [{"context": "the cat sees the"}, {"context": " a big "}], "a": [{"context": "the dog has"}],
         "runs": [{"context": "the dog"}]}


def write_aoa_data(root: Path, human_rows: list[str] | None = None) -> Path:
    aoa = root / "full_eval" / "aoa"
    aoa.mkdir(parents=True, exist_ok=True)
    (aoa / "cdi_childes.json").write_text(json.dumps(WORDS))
    ages = ",".join(str(a) for a in range(16, 31))
    rows = human_rows or ["dog," + ",".join(f"{x:.4f}" for x in sigmoid(np.arange(16, 31), 1, 0.5, 20, 0)),
                          "runs," + ",".join(f"{x:.4f}" for x in sigmoid(np.arange(16, 31), 1, 0.5, 25, 0))]
    (aoa / "cdi_human.csv").write_text(f"word,{ages}\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A causal run folder: final/ and three word checkpoints (different weights)."""
    root = tmp_path_factory.mktemp("aoa-run")
    lines = generate_splits(1500, 10, 10, seed=0)["train"]
    tokenizer = use_causal_template(train_bpe(lines, vocab_size=350))
    cfg = ModelConfig(arch="llama", hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2)
    models = {}
    for seed, name in enumerate(["chck_1M", "chck_2M", "chck_3M", "final"]):
        torch.manual_seed(seed)
        models[name] = build_model(cfg, len(tokenizer), 64, special_token_ids(tokenizer)).eval()
        save_final(models[name], tokenizer, root / "run" / name, seq_len=64)
    return root / "run", models, tokenizer


def test_words_and_revision_names_are_read_as_the_pipeline_reads_them(tmp_path):
    path = write_aoa_data(tmp_path) / "full_eval" / "aoa" / "cdi_childes.json"
    assert read_words(path) == [("dog", ["the cat sees the", " a big "]), ("runs", ["the dog"])]  # "a": one letter
    assert read_words(path, min_context=2) == [("dog", ["the cat sees the", " a big "])]
    assert word_count("chck_500K") == 500_000 and word_count("chck_20M") == 20_000_000
    assert step_number("chck_20M") == 2e7 and step_number("chck_500K") == 5e5


def test_surprisals_equal_a_plain_reference_causal_and_masked(run, tmp_path):
    run_dir, models, tokenizer = run
    words = [("dog", ["the cat sees the", " a big "]), ("runs", ["the dog"])]
    got = surprisals(models["chck_1M"], tokenizer, False, words, batch_size=2)
    texts = [("the cat sees the dog", "dog"), ("a big dog", "dog"), ("the dog runs", "runs")]
    want = [naive_causal_logprob(models["chck_1M"], tokenizer, s) - naive_causal_logprob(
        models["chck_1M"], tokenizer, s[: -len(c)].rstrip()) for s, c in texts]
    assert np.allclose(got, -np.array(want), atol=1e-4)
    lines = generate_splits(600, 10, 10, seed=0)["train"]
    mlm_tokenizer = train_bpe(lines, vocab_size=350)
    torch.manual_seed(0)
    mlm = build_model(ModelConfig(arch="roberta", hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2),
                      len(mlm_tokenizer), 64, special_token_ids(mlm_tokenizer)).eval()
    got = surprisals(mlm, mlm_tokenizer, True, words, batch_size=3)
    assert np.allclose(got, [naive_masked_surprisal(mlm, mlm_tokenizer, s, c) for s, c in texts], atol=1e-4)
    enc = mlm_tokenizer("the dog runs", return_offsets_mapping=True)  # "runs" is Ġ r un s here: a lone Ġ
    assert mlm_tokenizer.convert_ids_to_tokens(enc["input_ids"])[3] == "Ġ" and enc["offset_mapping"][3] == (7, 8)
    assert got[2] < -reference(mlm, mlm_tokenizer, True, "the dog runs", " runs")  # ... which the span leaves out


def naive_masked_surprisal(model, tokenizer, text: str, word: str) -> float:
    """One masked copy per token ending after the word's first character, one forward each (the pipeline's mlm)."""
    enc = tokenizer(text, return_offsets_mapping=True)
    total = 0.0
    with torch.no_grad():
        for i, (_, end) in enumerate(enc["offset_mapping"]):
            if end > len(text) - len(word):
                ids = torch.tensor([enc["input_ids"]])
                ids[0, i] = tokenizer.mask_token_id
                total -= float(torch.log_softmax(model(input_ids=ids).logits[0, i], -1)[enc["input_ids"][i]])
    return total


def test_the_models_age_of_acquisition_is_where_its_fitted_curve_crosses_half_way():
    steps = [float(word_count(r)) for r in REVISIONS]
    a, b, c, d = 6.0, 3.0, 7.0, -16.0  # -surprisal rises from -16 to -10 nats around log10(words) = 7
    values = [-sigmoid(np.log10(s + 1), a, b, c, d) for s in steps]
    chance = np.log2(CHANCE_VOCAB)  # log2 against nats: the pipeline's threshold, kept
    target = chance - 0.5 * (chance - min(values))
    by_hand = c - np.log(a / (-target - d) - 1) / b
    assert 6.0 < by_hand < 8.0
    assert model_aoa(values * 2, steps * 2) == pytest.approx(by_hand, abs=1e-3)  # two contexts per step
    assert model_aoa([15.0] * len(steps), steps) is None  # a flat curve: no fit crosses, the word is left out
    assert model_aoa(values[:2], steps[:2]) is None       # fewer than 3 points
    ages = np.arange(16, 31, dtype=float)
    assert child_aoa(ages, sigmoid(ages, 1.0, 0.5, 22.0, 0.0)) == pytest.approx(22.0, abs=1e-3)
    assert child_aoa(ages, np.full(15, np.nan)) is None


def test_curve_fitness_is_pearsons_r_over_the_words_both_curves_give(tmp_path):
    steps = [word_count(r) for r in REVISIONS]
    mids = {"dog": 6.6, "ball": 7.0, "runs": 7.3, "sings": 7.8}
    child = {"dog": 19.0, "ball": 23.0, "runs": 22.0, "sings": 27.0, "flat": 21.0}
    rows = [{"step": r, "target_word": w, "surprisal": float(-sigmoid(np.log10(s + 1), 6.0, 3.0, m, -16.0))}
            for w, m in mids.items() for r, s in zip(REVISIONS, steps)]
    rows += [{"step": r, "target_word": "flat", "surprisal": 12.0} for r in REVISIONS]   # no model AoA
    ages = ",".join(str(a) for a in range(16, 31))
    csv = tmp_path / "cdi_human.csv"
    csv.write_text(f"word,{ages}\n" + "".join(
        f"{w}," + ",".join(f"{x:.6f}" for x in sigmoid(np.arange(16, 31), 1, 0.5, child[w], 0)) + "\n"
        for w in [*mids, "flat"]))
    got = curve_fitness(rows, csv)
    assert got["words"] == list(mids) and got["n_words"] == 4
    assert got["child_aoa"] == pytest.approx([child[w] for w in mids], abs=1e-3)
    model = [model_aoa([r["surprisal"] for r in rows if r["target_word"] == w], steps) for w in mids]
    assert got["curve_fitness"] == pytest.approx(np.corrcoef(model, [child[w] for w in mids])[0, 1], abs=1e-6)
    assert curve_fitness(rows[: 2 * len(REVISIONS)], csv)["curve_fitness"] == 0.0  # < 3 words: the pipeline's 0


def test_the_full_suite_writes_surprisal_json_where_collate_preds_looks(run, tmp_path, capsys):
    from sleeptrain.cli import main

    run_dir, models, tokenizer = run
    data = write_aoa_data(fake_evaluation_data(tmp_path / "evaluation_data"))
    out = tmp_path / "results"
    assert main(["eval", str(run_dir / "final"), "suite=babylm-full", f"data={data}", f"babylm.out={out}",
                 "babylm.tasks=[aoa]", f"out={tmp_path / 'r.json'}", "progress=false"]) == 0
    aoa = json.loads((tmp_path / "r.json").read_text())["babylm"]["aoa"]
    assert aoa["revisions"] == ["chck_1M", "chck_2M", "chck_3M"] and aoa["words"] == 2 and aoa["contexts"] == 3
    assert aoa["missing_for_collate"][0] == "chck_4M" and len(aoa["missing_for_collate"]) == 16
    assert "curve_fitness" in aoa  # 2 CDI words: fewer than 3, the pipeline's 0.0
    written = json.loads((out / "run" / "main" / "zero_shot" / "causal" / "AoA_word" / "surprisal.json").read_text())
    assert written["metadata"]["total_steps"] == 3 and written["metadata"]["use_bos_only"] is False
    assert [(r["step"], r["target_word"], r["context_id"]) for r in written["results"][:4]] == [
        ("chck_1M", "dog", 0), ("chck_1M", "dog", 1), ("chck_1M", "runs", 0), ("chck_2M", "dog", 0)]
    assert set(written["results"][0]) == {"step", "word_count", "target_word", "context_id", "context", "surprisal"}
    one = surprisals(models["chck_2M"], tokenizer, False, [("dog", ["the cat sees the"])], batch_size=1)[0]
    assert written["results"][3]["surprisal"] == pytest.approx(one, abs=1e-5)
    assert "aoa" in capsys.readouterr().out


def test_aoa_is_skipped_with_its_reason(run, tmp_path, capsys):
    from sleeptrain.cli import main

    run_dir, models, _ = run
    data = write_aoa_data(fake_evaluation_data(tmp_path / "evaluation_data"))
    assert main(["eval", str(run_dir / "chck_1M"), "suite=babylm-full", f"data={data}", "babylm.tasks=[aoa]",
                 f"babylm.out={tmp_path / 'o'}", f"out={tmp_path / 'r.json'}", "progress=false"]) == 0
    assert "not a run's final/ folder: give babylm.checkpoints=RUN_DIR" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", str(run_dir / "chck_1M"), "suite=babylm-full", f"data={data}", "babylm.tasks=[aoa]",
                 f"babylm.checkpoints={empty}", f"babylm.out={tmp_path / 'o'}", f"out={tmp_path / 'r2.json'}",
                 "progress=false"]) == 0
    assert json.loads((tmp_path / "r2.json").read_text())["babylm"]["skipped"]["aoa"].startswith("no chck_* model")
