import json
import re

import numpy as np
import pytest
import torch

from sleeptrain.config import DataConfig
from sleeptrain.data.corpus import load_corpus, read_babylm
from sleeptrain.data.grammar import generate_splits
from sleeptrain.data.samples import CausalBatcher, MaskedBatcher, PackedBlocks, RandomWindows
from sleeptrain.data.token_store import encode_documents, get_token_stores
from sleeptrain.data.tokenizer import SPECIAL_TOKENS, get_tokenizer, load_tokenizer, train_bpe
from sleeptrain.config import GeneratedDataConfig, TokenizerConfig
from sleeptrain.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(generate_splits(2000, 10, 10, seed=0)["train"], vocab_size=400)


def make_babylm(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return root


# --- BabyLM reader ---------------------------------------------------------------------------------------------

def test_babylm_reader_strips_tags_and_blank_lines(tmp_path):
    root = make_babylm(tmp_path, {
        "train/switchboard.train": "A:\thello there\n\nB:\tyes indeed\n",
        "train/childes.train": "*CHI:\tmore juice\nwhere is it ?\n",
        "dev/switchboard.dev": "A:\tbye now\n",
        "test/switchboard.test": "B:\tok\n",
    })
    corpus = read_babylm(root)
    assert corpus.splits["train"] == {"childes": ["more juice", "where is it ?"],
                                      "switchboard": ["hello there", "yes indeed"]}
    assert corpus.lines("dev") == ["bye now"] and corpus.lines("test") == ["ok"]
    kept = read_babylm(root, strip_speaker_tags=False)
    assert kept.splits["train"]["switchboard"][0] == "A:\thello there"
    assert kept.fingerprint != corpus.fingerprint


def test_babylm_reader_holds_out_dev_when_missing(tmp_path):
    root = make_babylm(tmp_path, {"train/a.train": "\n".join(f"line {i}" for i in range(100))})
    corpus = read_babylm(root, dev_fraction=0.1)
    assert len(corpus.lines("dev")) == 10 and len(corpus.lines("train")) == 90
    assert corpus.notes and "held out" in corpus.notes[0]


@pytest.mark.parametrize("files,expected", [
    ({}, "does not exist"),
    ({"dev/a.dev": "x\n"}, "no training files"),
    ({"train/a.train": "\n\n  \n"}, "are empty"),
    ({"train/a.train": b"ok\n\xff\xfe bad\n"}, "line 2 is not valid UTF-8"),
])
def test_babylm_reader_errors_name_the_problem(tmp_path, files, expected):
    root = make_babylm(tmp_path / "corpus", files) if files else tmp_path / "missing"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_babylm(root)


def test_babylm_reader_rejects_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        read_babylm(tmp_path / "f")


@pytest.mark.shared
def test_corpus_mini(shared_data):
    corpus = read_babylm(shared_data / "corpus-mini")
    assert sorted(corpus.splits["train"]) == ["childes", "gutenberg", "switchboard", "wikipedia"]
    assert 900_000 < corpus.n_words("train") < 1_200_000
    assert not any(line.startswith(("A:\t", "B:\t")) for line in corpus.splits["train"]["switchboard"])
    assert corpus.lines("dev") and corpus.lines("test")


# --- Hugging Face datasets path ---------------------------------------------------------------------------------

def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    ds = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": [f"the dog runs {i} ." for i in range(50)] + [""]}),
        "validation": datasets.Dataset.from_dict({"text": ["the cat sleeps ."]}),
    })
    ds.save_to_disk(str(tmp_path / "ds"))
    corpus = load_corpus(DataConfig(source="hf", path=str(tmp_path / "ds")))
    assert len(corpus.lines("train")) == 50 and corpus.lines("dev") == ["the cat sleeps ."]


def test_hf_dataset_from_local_json_files(tmp_path):
    folder = tmp_path / "jsonds"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps({"utt": f"a ball {i} ."}) for i in range(100)))
    cfg = DataConfig(source="hf", path=str(folder), dev_fraction=0.1)
    cfg.hf.text_field = "utt"
    corpus = load_corpus(cfg)
    assert len(corpus.lines("train")) == 90 and len(corpus.lines("dev")) == 10
    cfg.hf.text_field = "text"
    with pytest.raises(DataError, match="data.hf.text_field: no column 'text'"):
        load_corpus(cfg)


def test_hf_missing_dataset_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="data.path"):
        load_corpus(DataConfig(source="hf", path=str(tmp_path / "nothing-here")))


# --- tokenizer ---------------------------------------------------------------------------------------------------

def test_bpe_has_roberta_special_ids_and_wraps_documents(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    ids = tokenizer("the dog runs .")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == "the dog runs ."
    assert len(tokenizer) <= 400


def test_tokenizer_is_cached_by_corpus_content(tmp_path, monkeypatch):
    cfg = DataConfig(cache_dir=str(tmp_path))
    corpus = load_corpus(DataConfig(source="generated", generated=GeneratedDataConfig(500, 20, 5, 1, 0)))
    first = get_tokenizer(TokenizerConfig(vocab_size=350), corpus, cfg)
    import sleeptrain.data.tokenizer as tok_module

    monkeypatch.setattr(tok_module, "train_bpe", lambda *a, **k: pytest.fail("retrained despite the cache"))
    second = get_tokenizer(TokenizerConfig(vocab_size=350), corpus, cfg)
    assert first.get_vocab() == second.get_vocab()
    assert len(list((tmp_path / "tokenizers").iterdir())) == 1


def test_load_tokenizer_errors(tmp_path, tokenizer):
    with pytest.raises(ConfigError, match="tokenizer.path: folder"):
        load_tokenizer(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="tokenizer.path: cannot load"):
        load_tokenizer(tmp_path / "empty")
    tokenizer.save_pretrained(str(tmp_path / "tok"))
    assert load_tokenizer(tmp_path / "tok", need_mask=True).mask_token_id == 4


# --- token store, samples, batches --------------------------------------------------------------------------------

def test_token_store_wraps_each_document(tokenizer):
    store = encode_documents({"b": ["the dog .", "a cat ."], "a": ["hi"]}, tokenizer)
    assert store.n_docs == 3 and store.sources == {"a": (0, 1), "b": (1, 3)}
    for d in range(3):
        doc = store.ids[store.doc_offsets[d]:store.doc_offsets[d + 1]]
        assert doc[0] == tokenizer.bos_token_id and doc[-1] == tokenizer.eos_token_id
    assert store.ids.dtype == np.uint16


def test_token_store_cache_round_trip(tmp_path, tokenizer):
    corpus = read_babylm(make_babylm(tmp_path / "c", {"train/x.train": "the dog runs .\nthe cat .\n",
                                                      "dev/x.dev": "a ball .\n"}))
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"))
    stores = get_token_stores(corpus, tokenizer, cfg)
    again = get_token_stores(corpus, tokenizer, cfg)
    assert isinstance(again["train"].ids, np.memmap)
    assert np.array_equal(stores["train"].ids, encode_documents(corpus.splits["train"], tokenizer).ids)


def test_packed_blocks_cover_the_tape_once_and_pad_the_tail(tokenizer):
    store = encode_documents({"x": generate_splits(50, 1, 1, 0)["train"]}, tokenizer)
    blocks = PackedBlocks(store, seq_len=16, pad_id=tokenizer.pad_token_id)
    ids, mask = blocks.get(np.arange(len(blocks)))
    assert ids.shape == (len(blocks), 16)
    assert int(mask.sum()) == store.n_tokens
    assert np.array_equal(ids.flatten()[mask.flatten().bool()].numpy(), store.ids.astype(np.int64))
    assert (ids[mask == 0] == tokenizer.pad_token_id).all()


def test_random_windows_are_seeded_and_in_range(tokenizer):
    store = encode_documents({"x": generate_splits(200, 1, 1, 0)["train"]}, tokenizer)
    a = RandomWindows(store, 16, tokenizer.pad_token_id, n_windows=None, seed=1)
    b = RandomWindows(store, 16, tokenizer.pad_token_id, n_windows=None, seed=1)
    assert len(a) == store.n_tokens // 16 and np.array_equal(a.starts, b.starts)
    assert not np.array_equal(a.starts, RandomWindows(store, 16, 1, None, seed=2).starts)
    ids, mask = a.get([0, 1])
    assert mask.all() and a.starts.max() <= store.n_tokens - 16
    assert np.array_equal(ids[0].numpy(), store.ids[a.starts[0]:a.starts[0] + 16])
    with pytest.raises(DataError, match="data.seq_len"):
        RandomWindows(store, store.n_tokens + 1, 1, None, 0)


def test_causal_batch_ignores_padding():
    ids = torch.tensor([[5, 6, 7, 1]])
    batch = CausalBatcher()(ids, torch.tensor([[1, 1, 1, 0]]))
    assert batch["labels"].tolist() == [[5, 6, 7, -100]]


def test_masked_batch_is_15_percent_never_special_and_seeded(tokenizer):
    store = encode_documents({"x": generate_splits(3000, 1, 1, 0)["train"]}, tokenizer)
    blocks = PackedBlocks(store, 64, tokenizer.pad_token_id)
    ids, mask = blocks.get(np.arange(len(blocks)))
    batch = MaskedBatcher(tokenizer, 0.15, seed=0)(ids, mask)
    chosen = batch["labels"] != -100
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids)) | (mask == 0)
    assert not (chosen & special).any()
    rate = chosen.sum() / (~special).sum()
    assert 0.13 < rate < 0.17
    assert torch.equal(batch["labels"][chosen], ids[chosen])
    as_mask = (batch["input_ids"] == tokenizer.mask_token_id) & chosen
    assert 0.75 < as_mask.sum() / chosen.sum() < 0.85
    again = MaskedBatcher(tokenizer, 0.15, seed=0)(ids, mask)
    assert torch.equal(again["input_ids"], batch["input_ids"])


def test_epoch_windows_are_drawn_per_seed_and_epoch(tmp_path):
    from sleeptrain.data.samples import EpochWindows
    from sleeptrain.data.token_store import TokenStore

    tape = np.arange(1000, dtype=np.uint16) % 500
    store = TokenStore(ids=tape, doc_offsets=np.array([0, len(tape)], dtype=np.int64), sources={"tape": (0, 1)})
    a = EpochWindows(store, 16, 1, per_epoch=50, n_epochs=3, seed=0)
    b = EpochWindows(store, 16, 1, per_epoch=50, n_epochs=3, seed=0)
    c = EpochWindows(store, 16, 1, per_epoch=50, n_epochs=3, seed=1)
    assert len(a) == 150
    assert np.array_equal(a.epoch_starts(1), b.epoch_starts(1)) and a.windows_sha256(2) == b.windows_sha256(2)
    assert not np.array_equal(a.epoch_starts(0), a.epoch_starts(1)) and a.windows_sha256(0) != c.windows_sha256(0)
    assert a.epoch_starts(0).min() >= 0 and a.epoch_starts(0).max() <= 1000 - 16
    ids, mask = a.get([0, 50, 149])  # first window of epochs 0 and 1, last of epoch 2
    for row, (epoch, pos) in zip(ids, [(0, 0), (1, 0), (2, 49)]):
        start = a.epoch_starts(epoch)[pos]
        assert row.tolist() == tape[start:start + 16].astype(np.int64).tolist()
    assert bool(mask.all())


def test_every_file_of_a_split_folder_is_a_source_and_what_is_not_read_is_named(tmp_path):
    """Issue 38: a `wikipedia.txt` beside `childes.train` was skipped without a word (77 % of the words)."""
    import gzip

    root = make_babylm(tmp_path, {"train/childes.train": "more juice\n", "train/wikipedia.txt": "a long article\n",
                                  "train/notes": "no suffix\n", "train/.DS_Store": b"\x00\x01",
                                  "train/old/x.train": "in a sub-folder\n", "dev/a.dev": "bye\n"})
    (root / "train" / "gutenberg.train.gz").write_bytes(gzip.compress(b"call me ishmael\n"))
    corpus = read_babylm(root)
    assert corpus.splits["train"] == {"childes": ["more juice"], "wikipedia": ["a long article"],
                                      "notes": ["no suffix"], "gutenberg": ["call me ishmael"]}
    assert "train/.DS_Store: hidden, not read" in corpus.notes
    assert any(n.startswith("train/old/: a sub-folder, not read") for n in corpus.notes)
    clash = make_babylm(tmp_path / "clash", {"train/a.train": "one\n", "train/a.txt": "two\n"})
    assert set(read_babylm(clash).splits["train"]) == {"a.train", "a.txt"}


def test_the_babylm_release_layouts_are_recognised(tmp_path):
    release = make_babylm(tmp_path / "r2025", {"train_10M/childes.train": "hi there\n", "dev/childes.dev": "bye\n",
                                               "test/childes.test": "ok\n"})
    corpus = read_babylm(release)
    assert corpus.lines("train") == ["hi there"] and "train: reading train_10M/ (BabyLM's release layout)" in corpus.notes
    old = make_babylm(tmp_path / "r2023", {"babylm_10M/aochildes.train": "hi\n", "babylm_dev/aochildes.dev": "bye\n",
                                           "babylm_test/aochildes.test": "ok\n"})
    assert read_babylm(old).lines("dev") == ["bye"] and read_babylm(old).lines("test") == ["ok"]
    both = make_babylm(tmp_path / "both", {"train_10M/a.train": "small\n", "train_100M/a.train": "large\n"})
    with pytest.raises(DataError, match="several training folders .* data.train_folder=train_100M"):
        read_babylm(both)
    assert read_babylm(both, train_folder="train_10M").lines("train") == ["small"]
    with pytest.raises(DataError, match="data.train_folder: no folder 'train_1M'"):
        read_babylm(both, train_folder="train_1M")
