"""A seeded probabilistic grammar of simple child-directed English, and agreement minimal pairs from it.

Why: the demo must show a model learning grammar on a laptop with no network. The grammar has the two agreement
systems BLiMP tests most (subject-verb, determiner-noun), pronouns, names, copulas, modals, progressives, questions
and imperatives; word choice is Zipf-distributed like real child-directed speech. Everything is a pure function of
the seed. Minimal pairs use BLiMP's jsonl fields (`sentence_good`, `sentence_bad`, `field`, `linguistics_term`,
`UID`, `pairID`), so the same evaluator reads them and real BLiMP.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import json
import random
from pathlib import Path
from typing import Callable, Iterator

GRAMMAR_VERSION = 1  # bump when the output for a seed changes (invalidates caches)

# (singular, plural); animate nouns can be subjects of action verbs.
ANIMATE = [
    ("dog", "dogs"), ("cat", "cats"), ("baby", "babies"), ("bird", "birds"), ("cow", "cows"), ("duck", "ducks"),
    ("horse", "horses"), ("bunny", "bunnies"), ("boy", "boys"), ("girl", "girls"), ("child", "children"),
    ("mouse", "mice"), ("puppy", "puppies"), ("man", "men"), ("woman", "women"), ("friend", "friends"),
    ("monkey", "monkeys"), ("frog", "frogs"), ("bear", "bears"), ("pig", "pigs"), ("kitty", "kitties"),
    ("lion", "lions"), ("duckling", "ducklings"), ("teacher", "teachers"),
]
INANIMATE = [
    ("ball", "balls"), ("book", "books"), ("cup", "cups"), ("box", "boxes"), ("car", "cars"), ("shoe", "shoes"),
    ("hat", "hats"), ("apple", "apples"), ("cookie", "cookies"), ("block", "blocks"), ("spoon", "spoons"),
    ("toy", "toys"), ("truck", "trucks"), ("banana", "bananas"), ("sock", "socks"), ("chair", "chairs"),
    ("bed", "beds"), ("door", "doors"), ("table", "tables"), ("train", "trains"), ("flower", "flowers"),
    ("tree", "trees"), ("boat", "boats"), ("bottle", "bottles"), ("crayon", "crayons"), ("puzzle", "puzzles"),
    ("window", "windows"), ("blanket", "blankets"), ("egg", "eggs"), ("orange", "oranges"), ("basket", "baskets"),
]
DET_SG = ["a", "this", "that", "every", "one", "each"]
DET_PL = ["these", "those", "two", "three", "some", "many", "all the"]
DET_ANY = ["the", "my", "your", "his", "her", "our", "their"]
ADJECTIVES = [
    "big", "little", "red", "blue", "happy", "silly", "soft", "new", "old", "yellow", "green", "hungry", "sleepy",
    "funny", "nice", "pretty", "dirty", "wet", "tired", "good",
]
# (base, third-person singular, -ing)
INTRANSITIVE = [
    ("run", "runs", "running"), ("jump", "jumps", "jumping"), ("sleep", "sleeps", "sleeping"),
    ("sit", "sits", "sitting"), ("play", "plays", "playing"), ("cry", "cries", "crying"),
    ("fall", "falls", "falling"), ("go", "goes", "going"), ("swim", "swims", "swimming"),
    ("dance", "dances", "dancing"), ("laugh", "laughs", "laughing"), ("walk", "walks", "walking"),
    ("sing", "sings", "singing"), ("hide", "hides", "hiding"),
]
TRANSITIVE = [
    ("see", "sees", "seeing"), ("want", "wants", "wanting"), ("like", "likes", "liking"), ("have", "has", "having"),
    ("eat", "eats", "eating"), ("push", "pushes", "pushing"), ("find", "finds", "finding"),
    ("hold", "holds", "holding"), ("throw", "throws", "throwing"), ("need", "needs", "needing"),
    ("love", "loves", "loving"), ("take", "takes", "taking"), ("get", "gets", "getting"),
    ("kick", "kicks", "kicking"), ("hug", "hugs", "hugging"), ("make", "makes", "making"),
    ("read", "reads", "reading"), ("bring", "brings", "bringing"), ("catch", "catches", "catching"),
    ("touch", "touches", "touching"), ("wash", "washes", "washing"), ("fix", "fixes", "fixing"),
]
PREPOSITIONS = ["on", "in", "under", "behind", "next to", "near", "with"]
NAMES = ["mommy", "daddy", "emma", "sam", "lily", "max", "grandma", "grandpa", "ben", "mia"]
# subject pronoun -> (third-person singular?, copula, object form)
PRONOUNS = {
    "i": (False, "am", "me"), "you": (False, "are", "you"), "he": (True, "is", "him"), "she": (True, "is", "her"),
    "it": (True, "is", "it"), "we": (False, "are", "us"), "they": (False, "are", "them"),
}
INTERJECTIONS = ["yes .", "no .", "look !", "uh oh .", "good job !", "all done .", "oh no !", "there you go .",
                 "okay .", "wow !", "thank you .", "night night ."]


class Lexicon:
    """Zipf-weighted choices: the k-th item of each list has weight 1/(k+1), as in child-directed speech."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._cum: dict[int, list[float]] = {}

    def pick(self, items: list):
        key = id(items)
        cum = self._cum.get(key)
        if cum is None:
            cum = list(itertools.accumulate(1.0 / (k + 1) for k in range(len(items))))
            self._cum[key] = cum
        return items[bisect.bisect_left(cum, self.rng.random() * cum[-1])]


def _article(det: str, next_word: str) -> str:
    return "an" if det == "a" and next_word[0] in "aeiou" else det


class Grammar:
    """Sentence builders. Each returns a list of words; `plural` flags choose agreement features."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.lex = Lexicon(self.rng)

    # --- noun phrases -------------------------------------------------------------------------------------
    def noun(self, plural: bool, animate: bool | None = None) -> str:
        if animate is None:
            animate = self.rng.random() < 0.5
        pair = self.lex.pick(ANIMATE if animate else INANIMATE)
        return pair[1] if plural else pair[0]

    def determiner(self, plural: bool) -> str:
        if self.rng.random() < 0.55:
            return self.lex.pick(DET_ANY)
        return self.lex.pick(DET_PL if plural else DET_SG)

    def np(self, plural: bool, animate: bool | None = None, adj_prob: float = 0.3) -> list[str]:
        words = []
        if self.rng.random() < adj_prob:
            words.append(self.lex.pick(ADJECTIVES))
        words.append(self.noun(plural, animate))
        det = self.determiner(plural)
        return [_article(det, words[0])] + words

    def subject(self) -> tuple[list[str], bool, str]:
        """A subject: (words, third-person-singular?, copula)."""
        r = self.rng.random()
        if r < 0.3:
            pronoun = self.lex.pick(list(PRONOUNS))
            third, cop, _ = PRONOUNS[pronoun]
            return [pronoun], third, cop
        if r < 0.4:
            return [self.lex.pick(NAMES)], True, "is"
        plural = self.rng.random() < 0.45
        return self.np(plural, animate=True), not plural, "are" if plural else "is"

    def obj(self) -> list[str]:
        r = self.rng.random()
        if r < 0.15:
            return [PRONOUNS[self.lex.pick(list(PRONOUNS))][2]]
        if r < 0.22:
            return [self.lex.pick(NAMES)]
        return self.np(self.rng.random() < 0.4)

    def pp(self) -> list[str]:
        return [self.lex.pick(PREPOSITIONS)] + self.np(self.rng.random() < 0.3, animate=False, adj_prob=0.15)

    # --- sentences -----------------------------------------------------------------------------------------
    def transitive(self) -> list[str]:
        subj, third, _ = self.subject()
        verb = self.lex.pick(TRANSITIVE)
        words = subj + [verb[1] if third else verb[0]] + self.obj()
        if self.rng.random() < 0.2:
            words += self.pp()
        return words + ["."]

    def intransitive(self) -> list[str]:
        subj, third, _ = self.subject()
        verb = self.lex.pick(INTRANSITIVE)
        words = subj + [verb[1] if third else verb[0]]
        if self.rng.random() < 0.35:
            words += self.pp()
        return words + ["."]

    def copula_adjective(self) -> list[str]:
        subj, _, cop = self.subject()
        return subj + [cop, self.lex.pick(ADJECTIVES), "."]

    def copula_location(self) -> list[str]:
        subj, _, cop = self.subject()
        return subj + [cop] + self.pp() + ["."]

    def modal(self) -> list[str]:
        subj, _, _ = self.subject()
        verb = self.lex.pick(TRANSITIVE)
        return subj + [self.rng.choice(["can", "will", "should"]), verb[0]] + self.obj() + ["."]

    def progressive(self) -> list[str]:
        subj, _, cop = self.subject()
        if self.rng.random() < 0.5:
            return subj + [cop, self.lex.pick(INTRANSITIVE)[2], "."]
        return subj + [cop, self.lex.pick(TRANSITIVE)[2]] + self.obj() + ["."]

    def yes_no_question(self) -> list[str]:
        subj, third, cop = self.subject()
        if subj == ["i"]:
            subj, third, cop = ["you"], False, "are"
        if self.rng.random() < 0.5:
            return [cop] + subj + [self.lex.pick(ADJECTIVES), "?"]
        verb = self.lex.pick(TRANSITIVE)
        return ["does" if third else "do"] + subj + [verb[0]] + self.obj() + ["?"]

    def wh_question(self) -> list[str]:
        r = self.rng.random()
        if r < 0.4:
            plural = self.rng.random() < 0.45
            return ["where", "are" if plural else "is"] + self.np(plural) + ["?"]
        subj, third, _ = self.subject()
        if subj == ["i"]:
            subj, third = ["you"], False
        if r < 0.75:
            return ["what", "does" if third else "do"] + subj + [self.lex.pick(TRANSITIVE)[0], "?"]
        return ["who", "is", self.lex.pick(TRANSITIVE)[2]] + self.obj() + ["?"]

    def imperative(self) -> list[str]:
        if self.rng.random() < 0.3:
            return ["look", "at"] + self.np(self.rng.random() < 0.4) + ["!"]
        verb = self.lex.pick(TRANSITIVE)
        words = [verb[0]] + self.np(self.rng.random() < 0.4, animate=False)
        if self.rng.random() < 0.3:
            words += self.pp()
        return words + [self.rng.choice([".", "!"])]

    def attractor(self) -> list[str]:
        """Agreement across a prepositional phrase: 'the dog on the boxes is happy .'"""
        plural = self.rng.random() < 0.45
        return self.np(plural, animate=True) + self.pp() + ["are" if plural else "is", self.lex.pick(ADJECTIVES), "."]

    def coordination(self) -> list[str]:
        return (self.np(False, animate=True) + ["and"] + self.np(self.rng.random() < 0.3, animate=True)
                + ["are", self.lex.pick(ADJECTIVES), "."])

    def there(self) -> list[str]:
        plural = self.rng.random() < 0.45
        return ["there", "are" if plural else "is"] + self.np(plural) + ["."]

    def interjection(self) -> list[str]:
        return self.lex.pick(INTERJECTIONS).split()

    def sentence(self) -> str:
        r = self.rng.random()
        for threshold, builder in self._TEMPLATES:
            if r < threshold:
                return " ".join(builder(self))
        return " ".join(self.interjection())

    _TEMPLATES: list[tuple[float, Callable]] = []


_WEIGHTS = [
    (Grammar.transitive, 0.20), (Grammar.intransitive, 0.12), (Grammar.copula_adjective, 0.10),
    (Grammar.copula_location, 0.06), (Grammar.modal, 0.07), (Grammar.progressive, 0.08),
    (Grammar.yes_no_question, 0.09), (Grammar.wh_question, 0.08), (Grammar.imperative, 0.08),
    (Grammar.attractor, 0.03), (Grammar.coordination, 0.02), (Grammar.there, 0.03),
]
Grammar._TEMPLATES = list(zip(itertools.accumulate(w for _, w in _WEIGHTS), (b for b, _ in _WEIGHTS)))


def generate_sentences(n: int, seed: int) -> list[str]:
    """`n` utterances, one string each, lower-case with punctuation split off (the corpus-mini CHILDES style)."""
    grammar = Grammar(seed)
    return [grammar.sentence() for _ in range(n)]


def generate_splits(train: int, dev: int, test: int, seed: int) -> dict[str, list[str]]:
    """Train/dev/test utterances from independent streams derived from one seed."""
    return {
        "train": generate_sentences(train, seed * 3 + 11),
        "dev": generate_sentences(dev, seed * 3 + 12),
        "test": generate_sentences(test, seed * 3 + 13),
    }


# --- minimal pairs --------------------------------------------------------------------------------------------

def _pair_subject_verb(g: Grammar) -> tuple[list[str], list[str]]:
    plural = g.rng.random() < 0.5
    subj = g.np(plural, animate=True)
    verb = g.lex.pick(INTRANSITIVE)
    good, bad = (verb[0], verb[1]) if plural else (verb[1], verb[0])
    tail = g.pp() if g.rng.random() < 0.3 else []
    return subj + [good] + tail + ["."], subj + [bad] + tail + ["."]


def _pair_pronoun_verb(g: Grammar) -> tuple[list[str], list[str]]:
    pronoun = g.rng.choice(list(PRONOUNS))
    third = PRONOUNS[pronoun][0]
    verb = g.lex.pick(TRANSITIVE)
    good, bad = (verb[1], verb[0]) if third else (verb[0], verb[1])
    obj = g.np(g.rng.random() < 0.4)
    return [pronoun, good] + obj + ["."], [pronoun, bad] + obj + ["."]


def _pair_copula(g: Grammar) -> tuple[list[str], list[str]]:
    plural = g.rng.random() < 0.5
    subj = g.np(plural, animate=None)
    good, bad = ("are", "is") if plural else ("is", "are")
    adj = g.lex.pick(ADJECTIVES)
    return subj + [good, adj, "."], subj + [bad, adj, "."]


def _pair_attractor(g: Grammar) -> tuple[list[str], list[str]]:
    plural = g.rng.random() < 0.5
    subj = g.np(plural, animate=True, adj_prob=0.0)
    prep = g.lex.pick(PREPOSITIONS)
    attractor = g.np(not plural, animate=False, adj_prob=0.0)  # the distractor noun has the other number
    good, bad = ("are", "is") if plural else ("is", "are")
    adj = g.lex.pick(ADJECTIVES)
    return subj + [prep] + attractor + [good, adj, "."], subj + [prep] + attractor + [bad, adj, "."]


def _pair_question_do(g: Grammar) -> tuple[list[str], list[str]]:
    plural = g.rng.random() < 0.5
    subj = g.np(plural, animate=True)
    good, bad = ("do", "does") if plural else ("does", "do")
    rest = [g.lex.pick(TRANSITIVE)[0]] + g.np(g.rng.random() < 0.4) + ["?"]
    return [good] + subj + rest, [bad] + subj + rest


def _pair_determiner_noun(g: Grammar) -> tuple[list[str], list[str]]:
    subj, third, _ = g.subject()
    verb = g.lex.pick(TRANSITIVE)
    plural = g.rng.random() < 0.5
    det = g.rng.choice(["these", "those", "two", "three", "many"] if plural else ["this", "that", "a", "every", "one"])
    pair = g.lex.pick(INANIMATE if g.rng.random() < 0.6 else ANIMATE)
    good_noun, bad_noun = (pair[1], pair[0]) if plural else (pair[0], pair[1])
    head = subj + [verb[1] if third else verb[0]]
    return (head + [_article(det, good_noun), good_noun, "."], head + [_article(det, bad_noun), bad_noun, "."])


def _pair_determiner_adjective_noun(g: Grammar) -> tuple[list[str], list[str]]:
    plural = g.rng.random() < 0.5
    det = g.rng.choice(["these", "those", "two", "many"] if plural else ["this", "that", "every", "one"])
    adj = g.lex.pick(ADJECTIVES)
    pair = g.lex.pick(INANIMATE)
    good_noun, bad_noun = (pair[1], pair[0]) if plural else (pair[0], pair[1])
    verb = g.lex.pick(TRANSITIVE)
    return (["look", "at", det, adj, good_noun, "!"], ["look", "at", det, adj, bad_noun, "!"]) if g.rng.random() < 0.3 \
        else (["i", verb[0], det, adj, good_noun, "."], ["i", verb[0], det, adj, bad_noun, "."])


# UID -> (builder, field, linguistics_term)
PARADIGMS: dict[str, tuple[Callable, str, str]] = {
    "regular_subject_verb_agreement": (_pair_subject_verb, "morphology", "subject_verb_agreement"),
    "pronoun_subject_verb_agreement": (_pair_pronoun_verb, "morphology", "subject_verb_agreement"),
    "copula_agreement": (_pair_copula, "morphology", "subject_verb_agreement"),
    "distractor_agreement_prepositional": (_pair_attractor, "syntax", "subject_verb_agreement"),
    "question_auxiliary_agreement": (_pair_question_do, "syntax", "subject_verb_agreement"),
    "determiner_noun_agreement": (_pair_determiner_noun, "morphology", "determiner_noun_agreement"),
    "determiner_noun_agreement_with_adjective": (_pair_determiner_adjective_noun, "morphology",
                                                 "determiner_noun_agreement"),
}


def generate_minimal_pairs(n_per_paradigm: int, seed: int) -> dict[str, list[dict]]:
    """UID -> BLiMP-format records. Each paradigm draws from its own stream, so adding one changes no other."""
    out = {}
    for k, (uid, (builder, field_, term)) in enumerate(PARADIGMS.items()):
        g = Grammar(seed * 1000 + 7 + k)
        records, seen = [], set()
        for _ in range(50 * n_per_paradigm):
            if len(records) == n_per_paradigm:
                break
            good, bad = builder(g)
            good_s, bad_s = " ".join(good), " ".join(bad)
            if good_s == bad_s or good_s in seen:
                continue
            seen.add(good_s)
            records.append({"sentence_good": good_s, "sentence_bad": bad_s, "field": field_,
                            "linguistics_term": term, "UID": uid, "pairID": str(len(records))})
        out[uid] = records
    return out


def iter_pair_lines(pairs: dict[str, list[dict]]) -> Iterator[tuple[str, str]]:
    for uid, records in pairs.items():
        yield uid, "\n".join(json.dumps(r) for r in records) + "\n"


def write_minimal_pairs(pairs: dict[str, list[dict]], out_dir: Path, compress: bool = False) -> Path:
    """Write one `<UID>.jsonl` (or `.jsonl.gz`) per paradigm, the layout of the BLiMP release."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for uid, text in iter_pair_lines(pairs):
        if compress:
            with gzip.open(out_dir / f"{uid}.jsonl.gz", "wt") as fh:
                fh.write(text)
        else:
            (out_dir / f"{uid}.jsonl").write_text(text)
    return out_dir
