from sleeptrain.data import grammar
from sleeptrain.data.grammar import (INTRANSITIVE, TRANSITIVE, generate_minimal_pairs, generate_sentences,
                                     generate_splits, write_minimal_pairs)

THIRD_SG = {v[1] for v in INTRANSITIVE + TRANSITIVE}
BASE = {v[0] for v in INTRANSITIVE + TRANSITIVE}


def test_deterministic_for_a_seed_and_different_across_seeds():
    assert generate_sentences(500, seed=3) == generate_sentences(500, seed=3)
    assert generate_sentences(500, seed=3) != generate_sentences(500, seed=4)


def test_default_size_is_a_few_hundred_thousand_words():
    splits = generate_splits(60_000, 2_000, 2_000, seed=0)
    words = sum(len(s.split()) for s in splits["train"])
    assert 200_000 < words < 600_000
    assert splits["train"][:50] != splits["dev"][:50]  # independent streams


def test_pronoun_subjects_agree_with_their_verbs():
    checked = 0
    for sentence in generate_sentences(20_000, seed=1):
        words = sentence.split()
        if len(words) > 1 and words[1] in THIRD_SG | BASE and words[1] not in THIRD_SG & BASE:
            if words[0] in ("he", "she", "it"):
                assert words[1] in THIRD_SG, sentence
                checked += 1
            elif words[0] in ("i", "you", "we", "they"):
                assert words[1] in BASE, sentence
                checked += 1
    assert checked > 500


def test_demonstratives_agree_with_their_nouns():
    singular = {s for s, _ in grammar.ANIMATE + grammar.INANIMATE}
    plural = {p for _, p in grammar.ANIMATE + grammar.INANIMATE}
    checked = 0
    for sentence in generate_sentences(20_000, seed=2):
        words = sentence.split()
        for i, w in enumerate(words[:-1]):
            nxt = words[i + 2] if words[i + 1] in grammar.ADJECTIVES and i + 2 < len(words) else words[i + 1]
            if w in ("these", "those"):
                assert nxt in plural, sentence
                checked += 1
            elif w in ("this", "that") and nxt in singular | plural:
                assert nxt in singular, sentence
                checked += 1
    assert checked > 500


def test_questions_and_pronouns_occur():
    sentences = generate_sentences(5_000, seed=0)
    assert sum(s.endswith("?") for s in sentences) > 500
    assert any(s.startswith("does ") for s in sentences) and any(s.startswith("do ") for s in sentences)
    assert any(s.split()[0] in ("he", "she", "they", "we") for s in sentences)


def test_minimal_pairs_are_blimp_format_and_differ_in_one_word():
    pairs = generate_minimal_pairs(50, seed=0)
    assert len(pairs) >= 6
    for uid, records in pairs.items():
        assert len(records) == 50
        assert len({r["sentence_good"] for r in records}) == 50  # no duplicate items
        for r in records:
            assert set(r) >= {"sentence_good", "sentence_bad", "field", "linguistics_term", "UID", "pairID"}
            assert r["UID"] == uid
            good, bad = r["sentence_good"].split(), r["sentence_bad"].split()
            assert len(good) == len(bad)
            assert sum(a != b for a, b in zip(good, bad)) == 1, r
    assert generate_minimal_pairs(20, seed=0) == generate_minimal_pairs(20, seed=0)


def test_subject_verb_pairs_put_the_agreeing_form_in_the_good_sentence():
    for r in generate_minimal_pairs(100, seed=5)["pronoun_subject_verb_agreement"]:
        pronoun, verb = r["sentence_good"].split()[:2]
        assert (verb in THIRD_SG) == (pronoun in ("he", "she", "it")), r


def test_write_minimal_pairs(tmp_path):
    import gzip
    import json

    pairs = generate_minimal_pairs(5, seed=0)
    write_minimal_pairs(pairs, tmp_path / "plain")
    write_minimal_pairs(pairs, tmp_path / "gz", compress=True)
    uid = next(iter(pairs))
    lines = (tmp_path / "plain" / f"{uid}.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == pairs[uid]
    with gzip.open(tmp_path / "gz" / f"{uid}.jsonl.gz", "rt") as fh:
        assert [json.loads(x) for x in fh] == pairs[uid]
