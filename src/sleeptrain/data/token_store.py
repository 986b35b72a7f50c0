"""Tokenize once, keep ids in one compact array per split (a memmapped .npy), cached by content.

Each document (line) lands on the tape as `<s> ids </s>` (only the prefix when bos == eos, GPT-2 style), so the
separators are ordinary tokens the model learns to predict. Sources keep their document ranges so evaluation can
report per-source figures.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sleeptrain.config import DataConfig
from sleeptrain.data.corpus import Corpus
from sleeptrain.data.tokenizer import cache_root, tokenizer_fingerprint
from sleeptrain.fsutil import atomic_dir

STORE_VERSION = 1
ENCODE_CHUNK = 20_000  # lines per encode_batch call (the Rust tokenizer parallelises inside a call)


@dataclass
class TokenStore:
    ids: np.ndarray           # (n_tokens,) uint16 or uint32; a memmap when loaded from the cache
    doc_offsets: np.ndarray   # (n_docs + 1,) int64: document d is ids[doc_offsets[d]:doc_offsets[d+1]]
    sources: dict[str, tuple[int, int]]  # source name -> [first doc, end doc)

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_docs(self) -> int:
        return int(self.doc_offsets.shape[0] - 1)

    def save(self, folder: Path) -> None:
        np.save(folder / "ids.npy", self.ids)
        np.save(folder / "doc_offsets.npy", self.doc_offsets)
        (folder / "sources.json").write_text(json.dumps(self.sources))

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> "TokenStore":
        mode = "r" if mmap else None
        sources = {k: tuple(v) for k, v in json.loads((folder / "sources.json").read_text()).items()}
        return cls(np.load(folder / "ids.npy", mmap_mode=mode), np.load(folder / "doc_offsets.npy"), sources)


def document_wrappers(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids put before and after every document on the tape."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    prefix = [bos] if bos is not None else []
    suffix = [eos] if eos is not None and eos != bos else []
    if not prefix and not suffix:
        raise ValueError("tokenizer has neither a bos nor an eos token to separate documents")
    return prefix, suffix


def encode_documents(lines_by_source: dict[str, list[str]], tokenizer, progress: str = "") -> TokenStore:
    """Every line as one document (BOS/EOS as the tokenizer wraps them); `progress`: a bar with this label."""
    prefix, suffix = document_wrappers(tokenizer)
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    backend = tokenizer.backend_tokenizer
    pieces: list[np.ndarray] = []
    lengths: list[int] = []
    sources: dict[str, tuple[int, int]] = {}
    wrap = len(prefix) + len(suffix)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, lines_by_source.values())), desc=progress, unit="line", leave=False,
                   dynamic_ncols=True)
    for source in sorted(lines_by_source):
        lines = lines_by_source[source]
        first = len(lengths)
        for start in range(0, len(lines), ENCODE_CHUNK):
            if bar is not None:
                bar.update(len(lines[start:start + ENCODE_CHUNK]))
            encodings = backend.encode_batch(lines[start:start + ENCODE_CHUNK], add_special_tokens=False)
            flat: list[int] = []
            for enc in encodings:
                flat.extend(prefix)
                flat.extend(enc.ids)
                flat.extend(suffix)
                lengths.append(len(enc.ids) + wrap)
            pieces.append(np.asarray(flat, dtype=dtype))
        sources[source] = (first, len(lengths))
    if bar is not None:
        bar.close()
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TokenStore(ids, offsets, sources)


def get_token_stores(corpus: Corpus, tokenizer, data_cfg: DataConfig, progress: bool = False) -> dict[str, TokenStore]:
    """split -> TokenStore, tokenized once and memory-mapped from the cache afterwards."""
    key = hashlib.sha256(
        f"v{STORE_VERSION}-{corpus.fingerprint}-{tokenizer_fingerprint(tokenizer)}".encode()
    ).hexdigest()[:16]
    folder = cache_root(data_cfg) / "tokens" / key
    stores = {}
    for split, by_source in corpus.splits.items():
        split_dir = folder / split
        if not (split_dir / "ids.npy").exists():
            with atomic_dir(split_dir) as tmp:
                encode_documents(by_source, tokenizer, f"tokenizing {split}" if progress else "").save(tmp)
        stores[split] = TokenStore.load(split_dir)
    return stores
