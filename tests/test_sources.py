"""Issue 38: a run says which sources it reads — each with its words and tokens in the start record, run.json and on
the console — so a file that adds nothing, or one that is missing, shows."""

from __future__ import annotations

import json

from conftest import TINY_RUN, run_cli


def test_a_run_lists_every_source_with_its_words_and_tokens(tmp_path):
    data = tmp_path / "corpus"
    for rel, text in {"train/childes.train": "the dog runs .\nthe cat sleeps .\n" * 200,
                      "train/wikipedia.txt": "a long article about dogs and cats .\n" * 300,
                      "dev/childes.dev": "the dog sleeps .\n" * 40, "test/childes.test": "a cat runs .\n" * 40}.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(text)
    small = [w for w in TINY_RUN if not w.startswith("data.generated")]
    result = run_cli("train", *small, "data=babylm", f"data.path={data}", "tokenizer.vocab_size=300",
                     "train.max_steps=2", "eval.final=false", "run.plot=false", f"run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    train = start["sources"]["train"]
    assert set(train) == {"childes", "wikipedia"}
    assert train["wikipedia"]["words"] == 300 * 8 and train["childes"]["lines"] == 400
    assert train["wikipedia"]["tokens"] > train["wikipedia"]["lines"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["sources"] == start["sources"]
    assert "data: train: childes 1,600 words" in result.stdout and "wikipedia 2,400 words" in result.stdout


def test_train_threads_is_set_and_recorded(tmp_path):
    import torch

    from sleeptrain.lm.run_setup import resolve_threads
    from sleeptrain.lm.train import train
    from sleeptrain.presets import load_config

    before = torch.get_num_threads()
    try:
        cfg = load_config([*TINY_RUN, "train.threads=1", "train.max_steps=2", "eval.final=false", "run.plot=false",
                           f"run.dir={tmp_path / 'run'}"]).config
        train(cfg)
        start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
        assert start["threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert resolve_threads(3) == 3 and resolve_threads(None, local_processes=64) == 1
