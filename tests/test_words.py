"""Words, not steps: counting words trained on, BabyLM milestone folders, the strict-track guard."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY_RUN, run_cli
from sleeptrain.data.grammar import generate_splits
from sleeptrain.data.samples import PackedBlocks
from sleeptrain.data.token_store import encode_documents
from sleeptrain.data.tokenizer import train_bpe
from sleeptrain.lm.words import WordMeter, milestone_name, word_start_table


@pytest.fixture(scope="module")
def corpus_and_tokenizer():
    lines = generate_splits(400, 10, 10, seed=1)["train"]
    lines += ["Hello,   world!  it's  a test.", "one", "a-b c.d e"]   # punctuation and odd spacing
    return lines, train_bpe(lines, vocab_size=300)


def test_one_pass_over_the_blocks_counts_every_whitespace_word_once(corpus_and_tokenizer, tmp_path):
    lines, tokenizer = corpus_and_tokenizer
    store = encode_documents({"src": lines}, tokenizer)
    blocks = PackedBlocks(store, 16, tokenizer.pad_token_id)
    meter = WordMeter(tokenizer, [], tmp_path)
    words = 0
    for start in range(0, len(blocks), 7):
        ids, mask = blocks.get(np.arange(start, min(start + 7, len(blocks))))
        words += meter.count(ids, mask)
    assert words == sum(len(line.split()) for line in lines)
    again = 0
    for _ in range(2):  # a second epoch (or a replay of everything) counts again
        ids, mask = blocks.get(np.arange(len(blocks)))
        again += meter.count(ids, mask)
    assert again == 2 * words


def test_special_tokens_and_padding_never_count(corpus_and_tokenizer, tmp_path):
    _, tokenizer = corpus_and_tokenizer
    table = word_start_table(tokenizer)
    assert not table[tokenizer.all_special_ids].any()
    ids = torch.tensor([[tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id]])
    meter = WordMeter(tokenizer, [], tmp_path)
    assert meter.count(ids, torch.ones_like(ids)) == 0


def test_milestone_names():
    assert [milestone_name(n) for n in (1_000_000, 100_000_000, 300_000, 1_500_000, 1234)] == \
        ["chck_1M", "chck_100M", "chck_300K", "chck_1500K", "chck_1234"]


def test_milestone_folders_load_and_survive_a_resume(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = tmp_path / "run"
    args = [*TINY_RUN, "data.generated.train_sentences=1000", "schedule=epochs", "schedule.epochs=2",
            "checkpoint.words=[2000,8000]", "eval.final=false",
            "checkpoint.every=10", f"run.dir={run_dir}"]
    result = run_cli("train", *args)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    milestones = [r for r in records if r["event"] == "milestone"]
    assert [m["words"] for m in milestones] == [2000, 8000]
    assert all(m["words_seen"] >= m["words"] for m in milestones)
    assert all("words_seen" in r for r in records if r["event"] == "train")
    end = records[-1]
    assert end["event"] == "end" and end["words_seen"] > 8000
    for name in ("chck_2K", "chck_8K", "final"):
        model = AutoModelForCausalLM.from_pretrained(run_dir / name)
        tokenizer = AutoTokenizer.from_pretrained(run_dir / name)
        assert tokenizer("the dog runs")["input_ids"][0] == tokenizer.bos_token_id
        assert model.config.vocab_size >= len(tokenizer)
    state = json.loads(sorted((run_dir / "checkpoints").glob("step-*"))[-1].joinpath("trainer_state.json")
                       .read_text())
    assert state["words"] == end["words_seen"]


def test_the_strict_track_guard(tmp_path, capsys):
    from types import SimpleNamespace

    from sleeptrain.errors import ConfigError
    from sleeptrain.lm.train import babylm_guard
    from sleeptrain.presets import load_config

    cfg = load_config(["train.batch_size=10", "data.seq_len=100", "babylm.max_epochs=10"]).config
    babylm_guard(cfg, SimpleNamespace(total_steps=100), train_tokens=10_000, is_main=True)   # 10 passes: allowed
    assert capsys.readouterr().err == ""
    babylm_guard(cfg, SimpleNamespace(total_steps=101), train_tokens=10_000, is_main=True)
    assert "10.1 passes over the 10,000 training tokens — more than babylm.max_epochs=10" in capsys.readouterr().err
    cfg.babylm.strict = True
    with pytest.raises(ConfigError, match="babylm.strict: the plan trains on 101,000 token positions"):
        babylm_guard(cfg, SimpleNamespace(total_steps=101), train_tokens=10_000, is_main=True)
    refused = run_cli("train", *TINY_RUN, "schedule=epochs", "schedule.epochs=3", "babylm.max_epochs=2",
                      "babylm.strict=true", f"run.dir={tmp_path / 'b'}")
    assert refused.returncode == 2 and "babylm.strict:" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "b").exists()


def test_replayed_samples_count_again(tmp_path):
    """words_seen counts the text behind every trained token: a sleep's replay adds to one pass of the data."""
    from sleeptrain.lm.train import train
    from sleeptrain.presets import load_config

    def words_seen(schedule: str, *extra: str) -> tuple[int, list[dict]]:
        run_dir = tmp_path / schedule
        cfg = load_config([*TINY_RUN, "data.generated.train_sentences=600", f"schedule={schedule}", *extra,
                           "eval.final=false", "checkpoint.every=0", "checkpoint.phase_boundaries=false",
                           "run.plot=false", f"run.dir={run_dir}"]).config
        train(cfg)
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return records[-1]["words_seen"], records

    once, _ = words_seen("single_pass")
    with_replay, records = words_seen("sleep", "schedule.sleep_wake_ratio=0.5", "replay.context_augment=false")
    train_records = [r for r in records if r["event"] == "train"]
    in_sleep = [(a, b) for a, b in zip(train_records, train_records[1:]) if a["phase"] == b["phase"] == "sleep"]
    assert in_sleep and all(b["words_seen"] > a["words_seen"] for a, b in in_sleep)  # replay steps count
    assert with_replay > once   # one pass of the wake data, plus the replayed samples
