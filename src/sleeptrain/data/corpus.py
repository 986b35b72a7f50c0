"""Corpora as plain text: split -> source -> lines (one utterance or document per line).

Three sources feed the same shape: the built-in grammar (`generated`), a BabyLM-layout folder (`babylm`:
`train/*.train`, `dev/*.dev`, `test/*.test`) and a Hugging Face `datasets` dataset (`hf`). Everything downstream
(tokenizer, token store) only sees `Corpus`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from sleeptrain.config import DataConfig
from sleeptrain.data import grammar
from sleeptrain.errors import DataError

SPLITS = ("train", "dev", "test")
# Speaker tags at the start of a line, as in BabyLM's Switchboard (`A:\t`) and raw CHILDES (`*CHI:\t`).
SPEAKER_TAG = re.compile(r"^\s*\*?[A-Za-z0-9_]{1,12}:\t")


@dataclass
class Corpus:
    """split -> source name -> lines. `fingerprint` identifies the content (for caches)."""

    splits: dict[str, dict[str, list[str]]]
    fingerprint: str
    description: str
    notes: list[str] = field(default_factory=list)

    def lines(self, split: str) -> list[str]:
        return [line for source in sorted(self.splits.get(split, {})) for line in self.splits[split][source]]

    def n_words(self, split: str) -> int:
        return sum(len(line.split()) for line in self.lines(split))


def _fingerprint(splits: dict[str, dict[str, list[str]]]) -> str:
    h = hashlib.sha256()
    for split in sorted(splits):
        for source in sorted(splits[split]):
            h.update(f"\0{split}\0{source}\0".encode())
            for line in splits[split][source]:
                h.update(line.encode("utf-8", "surrogatepass"))
                h.update(b"\n")
    return h.hexdigest()[:16]


def _clean(lines: list[str], strip_tags: bool) -> list[str]:
    out = []
    for line in lines:
        if strip_tags:
            line = SPEAKER_TAG.sub("", line, count=1)
        line = line.strip()
        if line:
            out.append(line)
    return out


def _hold_out_dev(splits: dict[str, dict[str, list[str]]], fraction: float, notes: list[str]) -> None:
    """Move the last `fraction` of each training source into dev (contiguous, like the corpus-mini split)."""
    dev = {}
    for source, lines in splits["train"].items():
        n = max(1, int(len(lines) * fraction)) if len(lines) > 1 else 0
        if n:
            dev[source] = lines[-n:]
            splits["train"][source] = lines[:-n]
    splits["dev"] = dev
    notes.append(f"no dev split found: held out the last {fraction:.0%} of each training source as dev")


def _check_line_lengths(file: Path, lines: list[str], limit: int) -> None:
    """BabyLM files hold one utterance or paragraph per line; a line of megabytes is a wrong file (a binary, a
    dump without newlines) and would make tokenizer training crawl, so it is refused with its position."""
    for i, line in enumerate(lines):
        if len(line) > limit:
            raise DataError(f"{file}: line {i + 1} has {len(line):,} characters, more than data.max_line_chars="
                            f"{limit:,} (one utterance per line expected; raise the limit if this is intended)")


def read_babylm(path: str | Path, strip_speaker_tags: bool = True, dev_fraction: float = 0.02,
                max_lines: int | None = None, max_line_chars: int | None = None) -> Corpus:
    """Read `train/*.train`, `dev/*.dev`, `test/*.test` under `path`; the file stem is the source name."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"data.path: folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DataError(f"data.path: {str(root)!r} is a file; expected a folder with train/ dev/ test/")
    splits: dict[str, dict[str, list[str]]] = {}
    empty: list[str] = []
    for split in SPLITS:
        files = sorted((root / split).glob(f"*.{split}")) if (root / split).is_dir() else []
        sources = {}
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                line_no = file.read_bytes()[: exc.start].count(b"\n") + 1
                raise DataError(f"{file}: line {line_no} is not valid UTF-8") from None
            lines = text.splitlines()
            if max_lines:
                lines = lines[:max_lines]
            if max_line_chars:
                _check_line_lengths(file, lines, max_line_chars)
            sources[file.stem] = _clean(lines, strip_speaker_tags)
            if not sources[file.stem]:
                empty.append(f"{split}/{file.name}")
        if sources:
            splits[split] = sources
    if "train" not in splits:
        raise DataError(f"data.path: no train/*.train files in {str(root)!r} (expected the BabyLM layout)")
    if not any(splits["train"].values()):
        raise DataError(f"data.path: the training files in {str(root)!r} are empty")
    notes: list[str] = [f"{name} holds no text lines: it adds nothing" for name in empty]
    if not any(splits.get("dev", {}).values()):
        _hold_out_dev(splits, dev_fraction, notes)
    return Corpus(splits, _fingerprint(splits), f"babylm folder {root}", notes)


def generated_corpus(cfg: DataConfig) -> Corpus:
    g = cfg.generated
    raw = grammar.generate_splits(g.train_sentences, g.dev_sentences, g.test_sentences, g.seed)
    splits = {split: {"generated": lines} for split, lines in raw.items()}
    fingerprint = hashlib.sha256(
        f"grammar-v{grammar.GRAMMAR_VERSION}-{g.train_sentences}-{g.dev_sentences}-{g.test_sentences}-{g.seed}".encode()
    ).hexdigest()[:16]
    return Corpus(splits, fingerprint, f"generated grammar (seed {g.seed}, {g.train_sentences} training sentences)")


def read_hf_dataset(cfg: DataConfig) -> Corpus:
    """A Hugging Face dataset: a folder written by `save_to_disk`, a local data folder/file, or a hub name."""
    import datasets

    name, h = cfg.path, cfg.hf
    local = Path(name).expanduser()
    try:
        if local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "dataset_info.json").exists()):
            ds = datasets.load_from_disk(str(local))
        else:
            ds = datasets.load_dataset(name, h.config_name)
    except FileNotFoundError as exc:
        raise DataError(f"data.path: dataset {name!r} not found ({str(exc).splitlines()[0]})") from None
    except (ValueError, ConnectionError, OSError) as exc:
        raise DataError(f"data.path: cannot load dataset {name!r}: {str(exc).splitlines()[0]}") from None
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({h.train_split: ds})
    if h.train_split not in ds:
        raise DataError(f"data.hf.train_split: {h.train_split!r} not in dataset splits {sorted(ds)}")

    def column(split: str) -> list[str]:
        part = ds[split]
        if h.text_field not in part.column_names:
            raise DataError(f"data.hf.text_field: no column {h.text_field!r} in split {split!r} "
                            f"(columns: {', '.join(part.column_names)})")
        texts = part[h.text_field]
        if cfg.max_lines:
            texts = texts[: cfg.max_lines]
        return _clean([t for t in texts if isinstance(t, str)], strip_tags=False)

    splits = {"train": {"hf": column(h.train_split)}}
    notes: list[str] = []
    if not splits["train"]["hf"]:
        raise DataError(f"data.path: split {h.train_split!r} of {name!r} has no text")
    if h.dev_split and h.dev_split in ds:
        splits["dev"] = {"hf": column(h.dev_split)}
    else:
        _hold_out_dev(splits, cfg.dev_fraction, notes)
    if "test" in ds:
        splits["test"] = {"hf": column("test")}
    return Corpus(splits, _fingerprint(splits), f"datasets {name}", notes)


def load_corpus(cfg: DataConfig) -> Corpus:
    if cfg.source == "generated":
        corpus = generated_corpus(cfg)
    elif cfg.source == "babylm":
        corpus = read_babylm(cfg.path, cfg.strip_speaker_tags, cfg.dev_fraction, cfg.max_lines, cfg.max_line_chars)
    else:
        corpus = read_hf_dataset(cfg)
    if not corpus.lines("dev"):
        raise DataError("data: the dev split is empty; add dev/*.dev files or more training lines")
    return corpus
