import numpy as np
import pytest
import torch

from sleeptrain.config import ModelConfig, ReplayConfig
from sleeptrain.lm.models import build_model
from sleeptrain.sleep.contexts import BufferSamples, RepackedSamples, sleep_order
from sleeptrain.sleep.registry import STRATEGIES
from sleeptrain.sleep.scores import ScoreBook
from sleeptrain.sleep.strategies import select_buffer

CFG = ReplayConfig()


def seeded_book(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    book = ScoreBook(n)
    book.record(np.arange(n), torch.from_numpy(rng.gamma(2.0, 1.0, n).astype(np.float32)), cycle=0, step=0)
    return book


def test_mean_replayed_score_strict_gt_weighted_gt_random():
    book = seeded_book()
    means = {}
    for name in ("strict", "weighted", "random"):
        sel = select_buffer(book, 500, cycle=0, step=1, cfg=ReplayConfig(strategy=name),
                            rng=np.random.default_rng(1))
        assert len(np.unique(sel.indices)) == 500  # without replacement
        means[name] = sel.replay_score_mean
    assert means["strict"] > means["weighted"] > means["random"]
    assert sel.candidate_score_mean == pytest.approx(float(book.scores.mean()), rel=1e-5)


def test_strict_is_the_top_k():
    book = seeded_book(100)
    sel = select_buffer(book, 10, 0, 1, ReplayConfig(strategy="strict"), np.random.default_rng(0))
    assert sorted(sel.indices.tolist()) == sorted(np.argsort(-book.scores)[:10].tolist())


def test_recency_prefers_recently_seen_samples():
    n = 2000
    book = ScoreBook(n)
    for step in range(n):
        book.record(np.array([step]), torch.ones(1), cycle=0, step=step)
    sel = select_buffer(book, 200, 0, n, ReplayConfig(strategy="recency", recency_alpha=1.0),
                        np.random.default_rng(0))
    assert np.median(sel.indices) > 0.75 * n


def test_scores_decay_with_age_down_to_the_floor():
    book = ScoreBook(3)
    book.record(np.array([0]), torch.tensor([2.0]), cycle=0, step=0)
    book.record(np.array([1]), torch.tensor([2.0]), cycle=3, step=5)
    book.flush()
    cfg = ReplayConfig(decay_rate=0.5, min_decay=0.2)
    assert book.decayed_scores(np.array([0, 1]), cycle=3, cfg=cfg).tolist() == pytest.approx([2 * 0.2, 2.0])
    assert book.decayed_scores(np.array([0]), cycle=1, cfg=cfg).tolist() == pytest.approx([1.0])
    assert book.candidates().tolist() == [0, 1]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_is_seeded_and_distinct(name):
    book = seeded_book(300)
    cfg = ReplayConfig(strategy=name)
    a = select_buffer(book, 50, 0, 10, cfg, np.random.default_rng(7)).indices
    b = select_buffer(book, 50, 0, 10, cfg, np.random.default_rng(7)).indices
    assert np.array_equal(a, b) and len(set(a.tolist())) == 50


def test_empty_book_selects_nothing():
    sel = select_buffer(ScoreBook(10), 5, 0, 0, CFG, np.random.default_rng(0))
    assert sel.indices.size == 0


def test_sleep_order_reshuffles_each_pass():
    order = sleep_order(5, 12, np.random.default_rng(0))
    assert len(order) == 12 and sorted(order[:5].tolist()) == list(range(5))
    assert sorted(order[5:10].tolist()) == list(range(5))


class FakeSamples:
    """Blocks of 8 tokens: documents are <s>=0 ... </s>=2; pad=1."""

    def __init__(self):
        self.rows = torch.tensor([[0, 10, 11, 2, 0, 12, 2, 0], [13, 14, 2, 0, 15, 16, 17, 2], [0, 18, 2, 1, 1, 1, 1, 1]])
        self.mask = (torch.arange(8)[None, :] < torch.tensor([[8], [8], [3]])).long()

    def get(self, idx):
        idx = torch.as_tensor(np.asarray(idx))
        return self.rows[idx], self.mask[idx]


def test_repacked_contexts_keep_every_token_and_only_pad_at_the_end():
    samples = FakeSamples()
    packed = RepackedSamples(samples, np.array([0, 1, 2]), pad_id=1, rng=np.random.default_rng(0),
                             doc_start_id=0, doc_end_id=2)
    ids, mask = packed.get(np.arange(len(packed)))
    real = sorted(ids[mask.bool()].tolist())
    assert real == sorted(samples.rows[samples.mask.bool()].tolist())  # no token lost or invented
    for row, m in zip(ids, mask):
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()          # padding only at the end, masked out
        assert (row[n:] == 1).all()
    assert packed.sample_ids([0]) is None
    assert BufferSamples(samples, np.array([2, 0])).sample_ids([1]).tolist() == [0]


def test_packed_sleep_batches_never_attend_to_padding():
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1), 40, 8,
                        {"bos": 0, "eos": 2, "pad": 1}).eval()
    packed = RepackedSamples(FakeSamples(), np.array([0, 1, 2]), pad_id=1, rng=np.random.default_rng(3),
                             doc_start_id=0, doc_end_id=2)
    ids, mask = packed.get(np.arange(len(packed)))
    assert (mask == 0).any()
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        for row in range(len(ids)):
            n = int(mask[row].sum())
            alone = model(input_ids=ids[row:row + 1, :n]).logits[0]
            assert torch.allclose(batched[row, :n], alone, atol=1e-5)
