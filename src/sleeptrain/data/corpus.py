"""Corpora as plain text: split -> source -> lines (one utterance or document per line).

Three sources feed the same shape: the built-in grammar (`generated`), a BabyLM-layout folder (`babylm`) and a
Hugging Face `datasets` dataset (`hf`). Everything downstream (tokenizer, token store) only sees `Corpus`.

A BabyLM-layout folder: `train/`, `dev/`, `test/` — or a BabyLM release's own names: `train_10M/` / `train_100M/`
(2024-2025) or `babylm_10M/` / `babylm_100M/`, `babylm_dev/`, `babylm_test/` (2023); with several training folders
`data.train_folder` names the one to read. In each split folder **every regular file is a source** (UTF-8 text, one
utterance or paragraph per line; `.gz` files are decompressed), named by its stem (`childes.train` -> `childes`,
`wikipedia.txt` -> `wikipedia`; the whole file name where two stems collide). The one rule for what is not read:
hidden files (`.DS_Store`, `.gitkeep`) and sub-folders — each named in a note.
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


# a split's folder names: sleeptrain's / BabyLM 2024-2025's, then BabyLM 2023's
SPLIT_FOLDERS = {"train": ("train",), "dev": ("dev", "babylm_dev"), "test": ("test", "babylm_test")}
TRAIN_RELEASES = re.compile(r"^(train_.+|babylm_\d+M)$")


def split_folder(root: Path, split: str, train_folder: str | None = None) -> tuple[Path | None, list[str]]:
    """The folder of `split` under `root` (None: the data has none), and a note when it is a release's own name."""
    if split == "train" and train_folder:
        folder = root / train_folder
        if not folder.is_dir():
            raise DataError(f"data.train_folder: no folder {train_folder!r} in {str(root)!r}")
        return folder, []
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name, ([] if name == split else [f"{split}: reading {name}/ (BabyLM's release layout)"])
    if split != "train":
        return None, []
    releases = sorted(d.name for d in root.iterdir() if d.is_dir() and TRAIN_RELEASES.match(d.name))
    if len(releases) > 1:
        raise DataError(f"data.path: {str(root)!r} holds several training folders ({', '.join(releases)}); choose "
                        f"one with data.train_folder={releases[0]}")
    if releases:
        return root / releases[0], [f"train: reading {releases[0]}/ (BabyLM's release layout)"]
    return None, []


def split_files(folder: Path, split: str) -> tuple[dict[str, Path], list[str]]:
    """Source name -> file for every regular file of a split folder, and a note for each entry not read."""
    files, notes = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            notes.append(f"{split}/{entry.name}: hidden, not read")
        elif entry.is_dir():
            notes.append(f"{split}/{entry.name}/: a sub-folder, not read (sources are the files directly in "
                         f"{folder.name}/)")
        elif entry.is_file():
            files.append(entry)
    stems = [Path(f.name.removesuffix(".gz")).stem for f in files]
    names = {f: (stem if stems.count(stem) == 1 else f.name) for f, stem in zip(files, stems)}
    return {names[f]: f for f in files}, notes


def read_text_file(file: Path) -> str:
    import gzip

    data = gzip.decompress(file.read_bytes()) if file.name.endswith(".gz") else file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{file}: line {line_no} is not valid UTF-8 (every file in a split folder is read as "
                        "text; move other files out)") from None


def read_babylm(path: str | Path, strip_speaker_tags: bool = True, dev_fraction: float = 0.02,
                max_lines: int | None = None, max_line_chars: int | None = None,
                train_folder: str | None = None) -> Corpus:
    """Read every file of the split folders under `path` (the module docstring has the rule); the file stem is the
    source name."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"data.path: folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DataError(f"data.path: {str(root)!r} is a file; expected a folder with train/ dev/ test/")
    splits: dict[str, dict[str, list[str]]] = {}
    empty: list[str] = []
    notes: list[str] = []
    for split in SPLITS:
        folder, found = split_folder(root, split, train_folder)
        notes += found
        files, skipped = split_files(folder, split) if folder is not None else ({}, [])
        notes += skipped
        sources = {}
        for name, file in files.items():
            lines = read_text_file(file).splitlines()
            if max_lines:
                lines = lines[:max_lines]
            if max_line_chars:
                _check_line_lengths(file, lines, max_line_chars)
            sources[name] = _clean(lines, strip_speaker_tags)
            if not sources[name]:
                empty.append(f"{split}/{file.name}")
        if sources:
            splits[split] = sources
    if "train" not in splits:
        raise DataError(f"data.path: no training files in {str(root)!r} (expected train/ — or BabyLM's train_10M/, "
                        "train_100M/ — with one text file per source)")
    if not any(splits["train"].values()):
        raise DataError(f"data.path: the training files in {str(root)!r} are empty")
    notes += [f"{name} holds no text lines: it adds nothing" for name in empty]
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
        corpus = read_babylm(cfg.path, cfg.strip_speaker_tags, cfg.dev_fraction, cfg.max_lines, cfg.max_line_chars,
                             cfg.train_folder)
    else:
        corpus = read_hf_dataset(cfg)
    if not corpus.lines("dev"):
        raise DataError("data: the dev split is empty; add dev/*.dev files or more training lines")
    return corpus
