import gzip
import json

import numpy as np
import pytest
import torch

from conftest import TINY_RUN, run_cli
from sleeptrain.config import ModelConfig
from sleeptrain.evaluate.config import EvalCommandConfig
from sleeptrain.data.grammar import generate_minimal_pairs, generate_splits, write_minimal_pairs
from sleeptrain.data.tokenizer import train_bpe
from sleeptrain.errors import DataError
from sleeptrain.evaluate.blimp import pair_points, summarize
from sleeptrain.evaluate.minimal_pairs import MinimalPair, load_minimal_pairs
from sleeptrain.evaluate.perplexity import scoring_windows, perplexity
from sleeptrain.evaluate.harness import LoadedModel, evaluate_model, is_masked_lm_config
from sleeptrain.evaluate.scoring import (causal_logprobs, masked_pll, masked_targets, naive_causal_logprob,
                                         naive_masked_pll)
from sleeptrain.lm.models import build_model, special_token_ids

SENTENCES = ["the dog runs .", "a cat .", "these big dogs see my little red balls on the table .", "look !",
             "does the baby want a cookie ?", "i", "the children are happy and the dogs are sleepy ."]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(generate_splits(2000, 10, 10, seed=0)["train"], vocab_size=350)


def tiny(arch, tokenizer):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2)
    return build_model(cfg, len(tokenizer), 64, special_token_ids(tokenizer)).eval()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_causal_scores_equal_naive(tokenizer, arch):
    model = tiny(arch, tokenizer)
    batched = causal_logprobs(model, tokenizer, SENTENCES, batch_size=3)
    naive = [naive_causal_logprob(model, tokenizer, s) for s in SENTENCES]
    assert np.allclose(batched, naive, atol=1e-4)
    assert (batched < 0).all()


@pytest.mark.parametrize("method", ["pll", "pll_word_l2r"])
def test_batched_masked_scores_equal_naive(tokenizer, method):
    model = tiny("roberta", tokenizer)
    batched = masked_pll(model, tokenizer, SENTENCES, batch_size=5, method=method)
    naive = [naive_masked_pll(model, tokenizer, s, method) for s in SENTENCES]
    assert np.allclose(batched, naive, atol=1e-4)


def test_word_l2r_masks_the_rest_of_the_word_to_the_right(tokenizer):
    (ids, targets), = masked_targets(tokenizer, ["hippopotamuses run ."], "pll_word_l2r")
    first_word = [t for t in targets if len(t[1]) > 1]
    assert first_word, "a rare word should split into several tokens"
    i, masked = first_word[0]
    assert masked[0] == i and all(j > i for j in masked[1:])
    (_, plain), = masked_targets(tokenizer, ["hippopotamuses run ."], "pll")
    assert all(len(m) == 1 for _, m in plain) and len(plain) == len(targets)


def test_ties_count_half_a_point():
    assert pair_points(np.array([1.0, 0.0, 2.0]), np.array([0.0, 1.0, 2.0])).tolist() == [1.0, 0.0, 0.5]
    pairs = [MinimalPair("a", "b", "p1", "agr", "morph", "0"), MinimalPair("c", "d", "p1", "agr", "morph", "1"),
             MinimalPair("e", "f", "p2", "other", "syntax", "0")]
    result = summarize(pairs, np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0]))
    assert result["by_paradigm"]["p1"] == {"accuracy": 0.75, "n": 2, "ties": 1}
    assert result["overall"] == pytest.approx((0.75 + 0.0) / 2)  # macro over paradigms
    assert result["tie_rate"] == pytest.approx(1 / 3)
    assert set(result["by_field"]) == {"morph", "syntax"} and result["by_phenomenon"]["agr"]["n"] == 2


def test_pair_files_tolerate_variants_and_name_bad_lines(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"sentence_good": "x y", "sentence_bad": "y x", "pair_id": 3})
                                      + "\n\n" + json.dumps({"sentence_good": "p", "sentence_bad": "q",
                                                             "extra": [1]}) + "\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"sentence_good": "g", "sentence_bad": "b", "UID": "u", "linguistics_term": "t",
                             "field": "f", "pairID": "7"}) + "\n")
    pairs = load_minimal_pairs(tmp_path)
    assert [(p.paradigm, p.phenomenon, p.field, p.pair_id) for p in pairs] == [
        ("a", "a", "unknown", "3"), ("a", "a", "unknown", "3"), ("u", "t", "f", "7")]
    (tmp_path / "c.jsonl").write_text('{"sentence_good": "a"}\n')
    with pytest.raises(DataError, match=r"c.jsonl: line 1 has no string sentence_good and sentence_bad"):
        load_minimal_pairs(tmp_path)
    (tmp_path / "c.jsonl").write_text('{"sentence_good": "a", "sentence_bad": "b"}\n{oops\n')
    with pytest.raises(DataError, match=r"c.jsonl: line 2 is not valid JSON"):
        load_minimal_pairs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no minimal pairs"):
        load_minimal_pairs(tmp_path / "empty")


def test_windows_score_every_target_once():
    for n, seq, stride in [(10, 4, 3), (10, 4, 2), (3, 8, 7), (17, 5, 3), (17, 5, 9)]:
        targets = []
        for b, e, first in scoring_windows(n, seq, stride):
            assert e - b <= seq and first > b
            targets.extend(range(first, e))
        assert targets == list(range(1, n))


def test_sliding_windows_with_full_context_match_one_window(tokenizer):
    model = tiny("llama", tokenizer)
    lines = {"s": generate_splits(8, 1, 1, 3)["train"]}
    packed = perplexity(model, tokenizer, lines, masked=False, seq_len=64)
    sliding = perplexity(model, tokenizer, lines, masked=False, seq_len=64, stride=16)
    assert packed["overall"]["tokens"] == sliding["overall"]["tokens"]
    assert packed["by_source"]["s"]["ppl"] > 1
    masked = perplexity(tiny("roberta", tokenizer), tokenizer, lines, masked=True, seq_len=32, mlm_positions=20)
    assert masked["overall"]["tokens"] == 20


def test_masked_detection():
    from transformers import GPT2Config, LlamaConfig, RobertaConfig

    assert is_masked_lm_config(RobertaConfig(architectures=["RobertaForMaskedLM"]))
    assert not is_masked_lm_config(LlamaConfig(architectures=["LlamaForCausalLM"]))
    assert not is_masked_lm_config(GPT2Config())
    assert is_masked_lm_config(RobertaConfig())


def test_plain_save_pretrained_folder_is_evaluated(tmp_path, tokenizer):
    """A folder written by plain transformers, not by sleeptrain."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64))
    model.save_pretrained(tmp_path / "plain")
    tokenizer.save_pretrained(tmp_path / "plain")
    pairs_dir = write_minimal_pairs(generate_minimal_pairs(10, seed=0), tmp_path / "pairs")
    corpus = tmp_path / "corpus"
    (corpus / "dev").mkdir(parents=True)
    (corpus / "dev" / "kids.dev").write_text("the dog runs .\nthe cats sleep .\n")
    (corpus / "train").mkdir()
    (corpus / "train" / "kids.train").write_text("the dog runs .\n")
    result = run_cli("eval", str(tmp_path / "plain"), f"blimp.path={pairs_dir}", f"perplexity.path={corpus}",
                     f"out={tmp_path / 'r.json'}", "blimp.per_pair=true")
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["model_type"] == "causal" and results["blimp"]["paradigms"] == 7
    assert 0 <= results["blimp"]["overall"] <= 1 and results["perplexity"]["by_source"]["kids"]["tokens"] > 0
    assert len((tmp_path / "r.pairs.jsonl").read_text().splitlines()) == 70


@pytest.mark.parametrize("setup,expected", [
    ("missing", "is not a folder"),
    ("no_config", "no config.json"),
    ("no_tokenizer", "no usable tokenizer"),
])
def test_bad_model_folders_are_one_line(tmp_path, tokenizer, setup, expected):
    folder = tmp_path / "m"
    if setup != "missing":
        folder.mkdir()
    if setup == "no_tokenizer":
        tiny("llama", tokenizer).save_pretrained(folder)
    result = run_cli("eval", str(folder), "blimp.path=/nonexistent")
    assert result.returncode == 2 and expected in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_eval_key_errors_are_one_line(tmp_path):
    result = run_cli("eval", str(tmp_path), "blimp.pth=x")
    assert result.returncode == 2 and "blimp.pth: unknown key; did you mean 'blimp.path'?" in result.stderr


@pytest.mark.slow
def test_demo_style_run_ends_with_evaluation_and_periodic_blimp(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", *TINY_RUN, "schedule=sleep", "schedule.n_cycles=2", "eval.blimp_every=10",
                     "eval.blimp_n=5", f"run.dir={run_dir}", "run.plot=false")
    assert result.returncode == 0, result.stderr
    assert "minimal pairs:" in result.stdout and "perplexity (dev)" in result.stdout
    results = json.loads((run_dir / "final" / "eval" / "results.json").read_text())
    assert results["blimp"]["pairs"] == 7 * 20
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    blimp = [r for r in records if r["event"] == "blimp"]
    assert blimp and all(0 <= r["overall"] <= 1 and r["pairs"] == 35 for r in blimp)
    # and `sleeptrain eval` on the same folder finds the run's pairs and data by itself
    again = run_cli("eval", str(run_dir / "final"), f"out={tmp_path / 'again.json'}")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["blimp"]["overall"] == results["blimp"]["overall"]


@pytest.mark.shared
def test_real_blimp_all_67_paradigms(shared_data, tokenizer):
    pairs = load_minimal_pairs(shared_data / "blimp")
    assert len(pairs) == 67_000 and len({p.paradigm for p in pairs}) == 67
    assert {p.field for p in pairs} >= {"morphology", "syntax", "semantics"}
    subset = load_minimal_pairs(shared_data / "blimp", max_per_paradigm=3)
    loaded = LoadedModel(tiny("llama", tokenizer), tokenizer, False, shared_data)
    results, _ = evaluate_model(loaded, EvalCommandConfig(), {"blimp": (subset, str(shared_data / "blimp"))})
    assert results["blimp"]["paradigms"] == 67 and results["blimp"]["pairs"] == 201
    assert len(results["blimp"]["by_phenomenon"]) >= 12  # BLiMP's 12 phenomena (+ s-selection as its own term)


def test_scoring_shows_progress_only_when_asked(tokenizer, capsys):
    from sleeptrain.evaluate.scoring import sentence_scores

    model = tiny("llama", tokenizer)
    quiet = sentence_scores(model, tokenizer, SENTENCES, masked=False, batch_size=2)
    assert capsys.readouterr().err == ""
    shown = sentence_scores(model, tokenizer, SENTENCES, masked=False, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "scoring 7 sentences" in err and "/4 [" in err          # a bar over the 4 batches
    assert np.allclose(quiet, shown)


def test_lm_eval_backend_agrees_with_the_native_scorer(tmp_path, tokenizer):
    """backend=lm-eval runs the same pairs through lm-evaluation-harness: same schema, same scores."""
    pytest.importorskip("lm_eval")
    model = tiny("llama", tokenizer)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    pairs_dir = write_minimal_pairs(generate_minimal_pairs(8, seed=1), tmp_path / "pairs")
    out = tmp_path / "lm-eval.json"   # the command line for lm-eval, the native scorer in this process
    run = run_cli("eval", str(tmp_path / "m"), f"blimp.path={pairs_dir}", "perplexity.enabled=false",
                  "backend=lm-eval", f"out={out}", "blimp.per_pair=true", "progress=false")
    assert run.returncode == 0, run.stderr
    harness = json.loads(out.read_text())["blimp"]
    harness_pairs = [json.loads(line) for line in (tmp_path / "lm-eval.pairs.jsonl").read_text().splitlines()]
    pairs = load_minimal_pairs(pairs_dir)
    results, tasks = evaluate_model(LoadedModel(model.eval(), tokenizer, False, tmp_path / "m"),
                                    EvalCommandConfig(progress=False), {"blimp": (pairs, str(pairs_dir))})
    _, good, bad = tasks["blimp"].scores
    native = results["blimp"]
    native_pairs = [{"pair_id": p.pair_id, "score_good": float(g), "score_bad": float(b)}
                    for p, g, b in zip(pairs, good, bad)]
    from lm_eval.models.huggingface import HFLM

    folder_lm = HFLM(pretrained=str(tmp_path / "m"), device="cpu", batch_size=4)  # the folder loads as lm-eval's hf
    assert folder_lm.prefix_token_id == tokenizer.bos_token_id
    assert harness["backend"] == "lm-eval" and "lm-evaluation-harness" in harness["method"]
    assert set(harness) == set(native) and harness["pairs"] == native["pairs"] == 56
    assert abs(harness["overall"] - native["overall"]) <= 0.01
    for a, b in zip(native_pairs, harness_pairs):
        assert a["pair_id"] == b["pair_id"]
        assert a["score_good"] == pytest.approx(b["score_good"], abs=1e-3)
        assert a["score_bad"] == pytest.approx(b["score_bad"], abs=1e-3)


def test_lm_eval_backend_refuses_masked_models_and_unknown_backends(tmp_path, tokenizer):
    from sleeptrain.errors import ConfigError
    from sleeptrain.evaluate.lm_eval_backend import evaluate_pairs_lm_eval

    pairs = [MinimalPair(good="the dog runs .", bad="the dog run .", paradigm="p", phenomenon="p", field="f",
                         pair_id=0)]
    with pytest.raises(ConfigError, match="backend: lm-eval scores causal LMs only"):
        evaluate_pairs_lm_eval(LoadedModel(tiny("roberta", tokenizer), tokenizer, True, tmp_path), pairs, 8)
    result = run_cli("eval", str(tmp_path), "backend=lmeval")
    assert result.returncode == 2 and "backend" in result.stderr and len(result.stderr.strip().splitlines()) == 1
