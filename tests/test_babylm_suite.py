"""The BabyLM pipeline's zero-shot tasks (issue 39): the official data layout, completion-ranking scores against a
plain-PyTorch reference, the pipeline's tie rule, its averages, its output files and the suite command."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sleeptrain.config import ModelConfig
from sleeptrain.data.grammar import generate_splits
from sleeptrain.data.tokenizer import train_bpe, use_causal_template
from sleeptrain.evaluate.babylm_data import read_dataset
from sleeptrain.evaluate.completion_ranking import rank, report_text, score_dataset
from sleeptrain.evaluate.scoring import naive_causal_logprob, naive_masked_pll
from sleeptrain.evaluate.task_babylm import expand_suite_words
from sleeptrain.lm.models import build_model, special_token_ids
from sleeptrain.lm.run_setup import save_final

TIE = {"sentence_good": "the dog runs .", "sentence_bad": "the dog runs ."}   # identical: a tie
FIRST_WORD = {"sentence_good": "the dog runs .", "sentence_bad": "a dog runs ."}  # differ in the first word only


def write_jsonl(path: Path, rows: list[dict], packed: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if packed:
        with gzip.open(path.with_name(path.name + ".gz"), "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)


def fake_evaluation_data(root: Path) -> Path:
    """A tiny evaluation_data/ in the pipeline's layout and each task's exact record format."""
    full = root / "full_eval"
    blimp_row = {"field": "morphology", "UID": "det_noun", "linguistics_term": "agreement"}
    write_jsonl(full / "blimp_filtered" / "det_noun.jsonl", [{**TIE, **blimp_row}, {**FIRST_WORD, **blimp_row},
                                                             {"sentence_good": "a cat sleeps .",
                                                              "sentence_bad": "a cat sleep .", **blimp_row}])
    write_jsonl(full / "supplement_filtered" / "turn_taking.jsonl", [FIRST_WORD])
    write_jsonl(full / "ewok_filtered" / "social.jsonl", [
        {"Domain": "social-relations", "Context1": "the dog sees the cat .", "Context2": "the cat sees the dog .",
         "Target1": "the dog runs .", "Target2": "the cat runs .", "ContextType": "x", "ContextDiff": "y",
         "TargetDiff": "z"}])
    write_jsonl(full / "entity_tracking" / "regular.jsonl", [
        {"input_prefix": "the box has a ball . the box has", "options": [" a ball .", " a cat .", " the dog ."],
         "numops": 0}])
    write_jsonl(full / "comps" / "comps_base.jsonl", [
        {"prefix_acceptable": "a dog", "prefix_unacceptable": "a ball", "property_phrase": "can run ."}],
                packed=True)  # gzipped: read here, with a note (the pipeline skips it)
    write_jsonl(full / "wug_adj_nominalization" / "wug.jsonl", [
        {"sentences": "the dog runs .\tthe dogs run .", "ratio": 0.7},
        {"sentences": "a cat sleeps .\ta cat sleep .", "ratio": 0.2},
        {"sentences": "the birds sing .\tthe bird sing .", "ratio": 0.9}])
    return root  # wug_past_tense is missing: skipped with one line


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("babylm-models")
    lines = generate_splits(1500, 10, 10, seed=0)["train"]
    out = {}
    for arch in ("llama", "roberta"):
        tokenizer = train_bpe(lines, vocab_size=350)
        if arch == "llama":
            tokenizer = use_causal_template(tokenizer)
        torch.manual_seed(0)
        cfg = ModelConfig(arch=arch, hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2)
        model = build_model(cfg, len(tokenizer), 64, special_token_ids(tokenizer)).eval()
        save_final(model, tokenizer, root / arch / "final", seq_len=64)
        out[arch] = (model, tokenizer, root / arch / "final")
    return out


def reference(model, tokenizer, masked: bool, sentence: str, completion: str) -> float:
    """The span's score by plain per-sentence forward passes: log P(sentence) - log P(prefix) (causal), or the PLL of
    the sentence's tokens after the prefix's (masked)."""
    prefix = sentence[: len(sentence) - len(completion)]
    if not masked:
        return naive_causal_logprob(model, tokenizer, sentence) - (
            naive_causal_logprob(model, tokenizer, prefix.rstrip()) if prefix.strip() else 0.0)
    ids = tokenizer(sentence)["input_ids"]
    skip = len(tokenizer(prefix.rstrip())["input_ids"]) - 1 if prefix.strip() else 1  # <s> prefix (no </s>)
    total = 0.0
    with torch.no_grad():
        for i in range(skip, len(ids) - 1):
            masked_ids = list(ids)
            masked_ids[i] = tokenizer.mask_token_id
            logits = model(input_ids=torch.tensor([masked_ids])).logits[0, i]
            total += float(torch.log_softmax(logits, -1)[ids[i]])
    return total


@pytest.mark.parametrize("arch", ["llama", "roberta"])
def test_completion_scores_equal_a_plain_reference(models, tmp_path, arch):
    model, tokenizer, _ = models[arch]
    data = fake_evaluation_data(tmp_path) / "full_eval"
    for task, folder in (("blimp", "blimp_filtered"), ("ewok", "ewok_filtered"), ("entity_tracking", "entity_tracking")):
        dataset = read_dataset(task, data / folder)
        scores = score_dataset(model, tokenizer, arch == "roberta", dataset, [1.0], batch_size=2)[1.0]
        for item, got in zip(dataset.items, scores):
            want = [reference(model, tokenizer, arch == "roberta", s, c) for s, c in zip(item.sentences, item.completions)]
            assert np.allclose(got, want, atol=1e-4), (task, got, want)
    if arch == "roberta":
        assert naive_masked_pll(model, tokenizer, "the dog runs .") == pytest.approx(
            reference(model, tokenizer, True, "the dog runs .", "the dog runs ."), abs=1e-4)


def test_ties_count_as_the_pipeline_counts_them_and_the_averages_are_over_uids(models, tmp_path):
    model, tokenizer, _ = models["llama"]
    dataset = read_dataset("blimp", fake_evaluation_data(tmp_path) / "full_eval" / "blimp_filtered")
    scores = score_dataset(model, tokenizer, False, dataset, [1.0], batch_size=4)[1.0]
    assert scores[0][0] == scores[0][1]  # the identical pair ties
    correct, half = rank("blimp", dataset.items, scores, "correct"), rank("blimp", dataset.items, scores, "half")
    wins = sum(float(s[0] > s[1]) for s in scores[1:])
    assert correct["accuracies"]["UID"]["det_noun"] == pytest.approx(100 * (1 + wins) / 3)
    assert half["accuracies"]["UID"]["det_noun"] == pytest.approx(100 * (0.5 + wins) / 3)
    assert correct["tie_rate"] == pytest.approx(1 / 3)
    assert correct["predictions"]["det_noun"]["predictions"][0] == {"id": "det_noun_0", "pred": "the dog runs ."}
    assert set(correct["accuracies"]) == {"field", "UID", "linguistics_term"}
    text = report_text("blimp", 1.0, correct)
    assert text.startswith("TEMPERATURE: 1.00\n\n### FIELD ACCURACY\nmorphology: ") and "### AVERAGE ACCURACY" in text


def test_the_suite_command_writes_the_pipelines_files_and_skips_a_missing_folder(models, tmp_path, capsys):
    from sleeptrain.cli import main

    _, _, folder = models["llama"]
    data = fake_evaluation_data(tmp_path / "evaluation_data")
    out = tmp_path / "results"
    assert main(["eval", str(folder), "suite=babylm-full", f"data={data}", f"babylm.out={out}",
                 "babylm.temperatures=[1.0,2.0]", f"out={tmp_path / 'r.json'}", "progress=false"]) == 0
    captured = capsys.readouterr()
    assert "babylm: wug_past_tense skipped: no folder" in captured.err and ".jsonl.gz" in captured.err
    results = json.loads((tmp_path / "r.json").read_text())
    assert "blimp" not in results and "perplexity" not in results  # a suite runs the suite
    got = results["babylm"]
    assert set(got["datasets"]) == {"blimp_filtered", "supplement_filtered", "ewok_filtered", "entity_tracking",
                                    "comps", "wug_adj_nominalization"}
    assert got["skipped"] == {"wug_past_tense": f"no folder {data / 'full_eval' / 'wug_past_tense'}",
                              "reading": f"no file {data / 'full_eval' / 'reading' / 'reading_data.csv'}",
                              "aoa": f"no file {data / 'full_eval' / 'aoa' / 'cdi_childes.json'}"}
    base = out / folder.parent.name / "main" / "zero_shot" / "causal"
    for task, name in (("blimp", "blimp_filtered"), ("blimp", "supplement_filtered"), ("ewok", "ewok_filtered"),
                       ("entity_tracking", "entity_tracking"), ("comps", "comps"), ("wug_adj", "wug_adj_nominalization")):
        predictions = json.loads((base / task / name / "predictions.json").read_text())
        for uid, entry in predictions.items():
            assert [p["id"] for p in entry["predictions"]] == [f"{uid}_{i}" for i in range(len(entry["predictions"]))]
        assert (base / task / name / "best_temperature_report.txt").read_text().startswith("TEMPERATURE: ")
    comps = json.loads((base / "comps" / "comps" / "predictions.json").read_text())
    assert comps["base"]["predictions"][0]["pred"] in ("a dog can run .", "a ball can run .")  # the full sentence
    assert "prob" in json.loads((base / "wug_adj" / "wug_adj_nominalization" / "predictions.json").read_text())[
        "wug_adj"]["predictions"][0]
    entity = got["datasets"]["entity_tracking"]
    assert "regular" in entity["by"]["UID"] and entity["average"] == entity["by"]["UID"]["regular"]
    assert "BabyLM full suite" in captured.out and "ewok_filtered" in captured.out


def test_suite_words_and_errors():
    assert expand_suite_words(["suite=babylm-fast", "data=/d", "batch_size=8"]) == [
        "babylm.enabled=true", "babylm.suite=fast", "babylm.data=/d", "batch_size=8", "blimp.enabled=false",
        "perplexity.enabled=false"]
    assert "blimp.enabled=false" not in expand_suite_words(["suite=babylm-full", "blimp.enabled=true"])
    from sleeptrain.errors import ConfigError

    with pytest.raises(ConfigError, match="suite"):
        expand_suite_words(["suite=babylm"])


def fake_reading_csv(path: Path, rows: int = 60) -> Path:
    import pandas as pd

    rng = np.random.default_rng(0)
    words = ["dog", "cat", "runs", "sleeps", "ball", "the", "a", "happy", "little", "sees"]
    contexts = ["the dog", "a cat", "the little dog", "my cat sees", "the happy baby"]
    data = []
    for i in range(rows):
        item, word = contexts[i % len(contexts)], words[i % len(words)]
        data.append({"item": item, "word": word, "prev_item": None if i % 7 == 0 else contexts[(i + 1) % len(contexts)],
                     "prev_word": words[(i + 3) % len(words)], "Subtlex_log10": rng.normal(3, 1),
                     "length": len(word), "context_length": len(item.split()), "prev_length": rng.integers(1, 8),
                     **{m: rng.normal(300, 30) for m in ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound",
                                                         "self_paced_reading_time")},
                     **{m: rng.normal(0, 1) for m in ("ELAN", "LAN", "N400", "P600", "EPNP", "PNP")}})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(data).to_csv(path, index=False)
    return path


def test_reading_scores_the_word_after_the_sentence_and_fits_the_pipelines_regressions(models, tmp_path, capsys):
    from sleeptrain.evaluate.reading import fit, read_reading, surprisals, warn_if_end_token

    model, tokenizer, _ = models["llama"]
    df = read_reading(fake_reading_csv(tmp_path / "reading" / "reading_data.csv"))
    assert warn_if_end_token(tokenizer, masked=False) is None  # sleeptrain's causal tokenizer: <s> only
    pred, prev = surprisals(model, tokenizer, df.head(6), masked=False)
    for (_, row), got in zip(df.head(6).iterrows(), pred):
        ids = [tokenizer.bos_token_id] + tokenizer(row["item"], add_special_tokens=False)["input_ids"]
        target = tokenizer(row["word"], add_special_tokens=False)["input_ids"]
        logp, text_ids = 0.0, list(ids)
        for i, token in enumerate(target):  # the word's own tokens, read after the sentence's last word
            scored = token if i == 0 else tokenizer(tokenizer.decode(token), add_special_tokens=False)["input_ids"][0]
            with torch.no_grad():
                logp += float(torch.log_softmax(model(input_ids=torch.tensor([text_ids])).logits[0, -1], -1)[scored])
            text_ids.append(token)
        assert got == pytest.approx(-logp, abs=1e-4)
    assert np.isnan(prev[0])  # row 0 has no previous item
    old = train_bpe(generate_splits(1500, 10, 10, seed=0)["train"], vocab_size=350)  # appends </s>
    assert "end token" in warn_if_end_token(old, masked=False)
    wrong, _ = surprisals(model, old, df.head(1), masked=False)
    assert wrong[0] != pytest.approx(pred[0], abs=1e-3)  # after </s> the model predicts another word

    df = df.copy()
    df["pred"], df["prev_pred"] = np.random.default_rng(1).normal(5, 1, len(df)), np.nan
    row = fit(df, "RTfirstfix", ["Subtlex_log10", "length", "context_length"])
    x = df[["Subtlex_log10", "length", "context_length"]].to_numpy(float)
    inter = np.column_stack([x[:, 0] * x[:, 1], x[:, 0] * x[:, 2], x[:, 1] * x[:, 2]])
    base = np.column_stack([np.ones(len(df)), x, inter])
    full = np.column_stack([base, df["pred"].to_numpy(float)])
    y = df["RTfirstfix"].to_numpy(float)

    def r2(design):
        resid = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
        return 1 - resid @ resid / ((y - y.mean()) @ (y - y.mean()))

    assert row["Change in R2 from baseline"] == pytest.approx(r2(full) - r2(base), abs=1e-10)


def test_the_suite_writes_the_reading_files_where_collate_preds_looks(models, tmp_path):
    from sleeptrain.cli import main

    _, _, folder = models["llama"]
    data = tmp_path / "evaluation_data"
    fake_reading_csv(data / "fast_eval" / "reading" / "reading_data.csv")
    assert main(["eval", str(folder), "suite=babylm-fast", f"data={data}", f"babylm.out={tmp_path / 'results'}",
                 f"out={tmp_path / 'r.json'}", "progress=false"]) == 0
    base = tmp_path / "results" / folder.parent.name / "main" / "zero_shot" / "causal" / "reading"
    predictions = json.loads((base / "predictions.json").read_text())
    assert len(predictions["reading"]["predictions"]) == 60 and predictions["reading"]["predictions"][0]["id"] == 0
    report = (base / "report.txt").read_text().splitlines()
    assert report[0].startswith("EYE TRACKING SCORE: ") and report[1].startswith("SELF-PACED READING SCORE: ")
    assert len((base / "predictive_power.jsonl").read_text().splitlines()) == 11
    results = json.loads((tmp_path / "r.json").read_text())["babylm"]
    assert set(results["skipped"]) == {"blimp_fast", "supplement_fast", "ewok_fast", "entity_tracking_fast",
                                       "wug_adj_nominalization", "wug_past_tense"}
    assert results["reading"]["rows"] == 60 and results["reading"]["warning"] is None


@pytest.mark.slow
def test_eval_suite_scores_every_word_checkpoint_during_training_without_changing_it(tmp_path):
    from conftest import TINY_RUN, run_cli
    from sleeptrain.lm.metrics_log import read_metrics

    data = tmp_path / "evaluation_data"
    write_jsonl(data / "fast_eval" / "blimp_fast" / "det_noun.jsonl", [
        {**FIRST_WORD, "field": "morphology", "UID": "det_noun", "linguistics_term": "agreement"}] * 3)
    fake_reading_csv(data / "fast_eval" / "reading" / "reading_data.csv", rows=30)
    common = [*TINY_RUN, "schedule=single_pass", "train.max_steps=20", "checkpoint.words=[2000,4000]",
              "eval.final=false"]
    plain = run_cli("train", *common, f"run.dir={tmp_path / 'plain'}")
    scored = run_cli("train", *common, f"run.dir={tmp_path / 'scored'}", "eval.suite=babylm-fast",
                     f"eval.suite_data={data}")
    assert plain.returncode == 0 and scored.returncode == 0, scored.stderr[-2000:]
    records = read_metrics(tmp_path / "scored" / "metrics.jsonl")
    events = [r for r in records if r["event"] == "babylm"]
    assert [e["dir"].rsplit("/", 1)[1] for e in events] == ["chck_2K", "chck_4K"]
    assert set(events[0]["averages"]) == {"blimp_fast"} and "eye_tracking_score" in events[0]["reading"]
    base = tmp_path / "scored" / "chck_2K" / "eval" / "babylm" / "scored" / "chck_2K" / "zero_shot" / "causal"
    assert (base / "blimp" / "blimp_fast" / "predictions.json").is_file() and (base / "reading" / "report.txt").is_file()
    losses = lambda run: [r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["event"] == "train"]  # noqa: E731
    assert losses("plain") == losses("scored")  # scoring a checkpoint leaves the training untouched


def test_eval_suite_needs_its_data_and_word_checkpoints(tmp_path):
    import sleeptrain
    from sleeptrain.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.suite_data: required"):
        sleeptrain.load_config(eval={"suite": "babylm-fast"})
    with pytest.raises(ConfigError, match="checkpoint.words"):
        sleeptrain.load_config(eval={"suite": "babylm-fast", "suite_data": str(tmp_path)}, checkpoint={"words": []})
    with pytest.raises(ConfigError, match="eval.suite"):
        sleeptrain.load_config(eval={"suite": "babylm-full", "suite_data": str(tmp_path)})


# The zero-shot files collate_preds.py's _check_validity_of_dir asserts for a revision (evaluation_pipeline/
# collate_preds.py of babylm/evaluation-pipeline-2025), relative to results/<model>/<revision>/zero_shot/<backend>/;
# the fine-tuning, AoA and DevBench files it also asks for are not sleeptrain's to write.
COLLATE_FULL = ["blimp/blimp_filtered", "blimp/supplement_filtered", "ewok/ewok_filtered",
                "entity_tracking/entity_tracking", "wug_adj/wug_adj_nominalization", "wug_past/wug_past_tense",
                "comps/comps", "reading"]
COLLATE_FAST = ["blimp/blimp_fast", "blimp/supplement_fast", "ewok/ewok_fast", "entity_tracking/entity_tracking_fast",
                "wug_adj/wug_adj_nominalization", "wug_past/wug_past_tense", "reading"]


def test_a_submission_tree_has_every_zero_shot_file_collate_preds_checks(models, tmp_path):
    from sleeptrain.cli import main

    _, _, final = models["llama"]
    run = final.parent
    data = fake_evaluation_data(tmp_path / "evaluation_data")
    write_jsonl(data / "full_eval" / "wug_past_tense" / "wug.jsonl", [
        {"sentences": "the dog ran .\tthe dog runned .", "ratio": r} for r in (0.2, 0.5, 0.8)])
    fake_reading_csv(data / "full_eval" / "reading" / "reading_data.csv", rows=30)
    fast = data / "fast_eval"
    for name in ("blimp_fast", "supplement_fast", "ewok_fast", "entity_tracking_fast", "wug_adj_nominalization",
                 "wug_past_tense", "reading"):
        source = {"blimp_fast": "blimp_filtered", "supplement_fast": "supplement_filtered", "ewok_fast": "ewok_filtered",
                  "entity_tracking_fast": "entity_tracking"}.get(name, name)
        shutil.copytree(data / "full_eval" / source, fast / name)
    chck = run / "chck_1M"
    if not chck.exists():
        shutil.copytree(final, chck)
    aoa = data / "full_eval" / "aoa"
    aoa.mkdir(parents=True)
    (aoa / "cdi_childes.json").write_text(json.dumps({"dog": [{"context": "the cat sees the"}]}))
    results = tmp_path / "results"
    assert main(["eval", str(final), "suite=babylm-full", f"data={data}", f"babylm.out={results}",
                 f"out={tmp_path / 'full.json'}", "progress=false"]) == 0
    assert main(["eval", str(chck), "suite=babylm-fast", f"data={data}", f"babylm.out={results}",
                 f"out={tmp_path / 'fast.json'}", "progress=false"]) == 0
    for revision, expected in (("main", COLLATE_FULL), ("chck_1M", COLLATE_FAST)):
        root = results / run.name / revision / "zero_shot" / "causal"
        for path in expected:
            predictions = json.loads((root / path / "predictions.json").read_text())
            for uid, entry in predictions.items():  # collate's shape: {UID: {"predictions": [{"id", "pred"}, ...]}}
                assert set(entry) == {"predictions"} and all({"id", "pred"} <= set(p) for p in entry["predictions"])
    # AoA: under main, one row per (checkpoint, word, context) with the keys _check_size_aoa reads
    surprisal = json.loads((results / run.name / "main" / "zero_shot" / "causal" / "AoA_word" / "surprisal.json")
                           .read_text())
    assert {r["step"] for r in surprisal["results"]} == {"chck_1M"} and len(surprisal["results"]) == 1


def test_the_mntp_backend_reads_each_masked_token_one_position_earlier(models):
    from sleeptrain.evaluate.completion_ranking import masked_scores, span_tokens

    model, tokenizer, _ = models["roberta"]
    sentence = "the dog runs ."
    ids, span = span_tokens(tokenizer, sentence, sentence, causal=False)
    want = 0.0
    for i in [j for j, inside in enumerate(span) if inside]:
        masked = list(ids)
        masked[i] = tokenizer.mask_token_id
        with torch.no_grad():
            want += float(torch.log_softmax(model(input_ids=torch.tensor([masked])).logits[0, i - 1], -1)[ids[i]])
    got = masked_scores(model, tokenizer, [(sentence, sentence)], [1.0], 8, mntp=True)[1.0][0]
    assert got == pytest.approx(want, abs=1e-4)
    assert got != pytest.approx(masked_scores(model, tokenizer, [(sentence, sentence)], [1.0], 8)[1.0][0], abs=1e-3)
