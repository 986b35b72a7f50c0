"""Byte-level BPE trained with `tokenizers` on the training split (cached), or an existing tokenizer folder.

Special tokens follow RoBERTa's ids (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>`=4) so one tokenizer serves
causal and masked models. The post-processor (what `tokenizer(text)` adds) depends on the model:
- masked LM: `<s> text </s>`, RoBERTa's layout, which the masked-LM scorers and the BabyLM pipeline's `mlm` backend
  expect;
- causal LM: `<s> text` — BOS and no end token, so `model.generate(**tokenizer("the dog"))` continues the sentence and
  a scorer that reads the prediction at the last position of `tokenizer(sentence)` (the BabyLM pipeline's reading
  task) reads it after the sentence's last word, not after an end of document.
The training tape does not use the post-processor: every document is laid out as `<s> text </s>` (token_store), and
the causal scorers prepend BOS themselves, so the choice changes no training and no score.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from sleeptrain.config import MASKED_ARCHS, DataConfig, TokenizerConfig
from sleeptrain.data.corpus import Corpus
from sleeptrain.errors import ConfigError
from sleeptrain.fsutil import atomic_dir

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TOKENIZER_VERSION = 1  # bump when training changes (invalidates caches)
MASKED_TEMPLATE = "<s> $A </s>"  # what train_bpe's tokenizer adds to one text (the cached folder keeps it)
CAUSAL_TEMPLATE = "<s> $A"


def cache_root(cfg: DataConfig) -> Path:
    root = cfg.cache_dir or os.environ.get("SLEEPTRAIN_CACHE") or Path.home() / ".cache" / "sleeptrain"
    return Path(root)


def train_bpe(lines: list[str], vocab_size: int, min_frequency: int = 2, progress: bool = False):
    """Train a byte-level BPE and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(lines, trainer, length=len(lines))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single=MASKED_TEMPLATE, pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", clean_up_tokenization_spaces=True,
    )


def load_tokenizer(path: str | Path, need_mask: bool = False):
    """Load a tokenizer folder (local only). Gives it a pad token if it has none (eos, as GPT-2 users do)."""
    from transformers import AutoTokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"tokenizer.path: folder {str(folder)!r} does not exist")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tokenizer.path: cannot load a tokenizer from {str(folder)!r}: "
                          f"{str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"tokenizer.path: {str(folder)!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if need_mask and tokenizer.mask_token is None:
        raise ConfigError(f"tokenizer.path: {str(folder)!r} has no mask token, which a masked LM (model.arch "
                          f"{' or '.join(MASKED_ARCHS)}) needs")
    return tokenizer


def use_causal_template(tokenizer):
    """Switch sleeptrain's own BPE (post-processor `<s> $A </s>`) to the causal template `<s> $A`; any other
    tokenizer (a `tokenizer.path` of the user's) is returned as it is."""
    from tokenizers import processors

    single = [next(iter(piece.values()))["id"] for piece in _post_processor(tokenizer).get("single", [])]
    if single != ["<s>", "A", "</s>"] or tokenizer.bos_token != "<s>" or tokenizer.eos_token != "</s>":
        return tokenizer
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=CAUSAL_TEMPLATE, pair="<s> $A </s> <s> $B", special_tokens=[("<s>", bos), ("</s>", eos)])
    return tokenizer


def _post_processor(tokenizer) -> dict:
    import json

    found = json.loads(tokenizer.backend_tokenizer.to_str()).get("post_processor") or {}
    return found if found.get("type") == "TemplateProcessing" else {}


def get_tokenizer(cfg: TokenizerConfig, corpus: Corpus, data_cfg: DataConfig, need_mask: bool = False,
                  progress: bool = False):
    """The configured tokenizer: loaded from `cfg.path`, or trained on the corpus (cached by content); sleeptrain's
    own BPE gets the causal template unless the model is a masked LM (`need_mask`)."""
    if cfg.path:
        return load_tokenizer(cfg.path, need_mask=need_mask)
    key = hashlib.sha256(
        f"v{TOKENIZER_VERSION}-{corpus.fingerprint}-{cfg.vocab_size}-{cfg.min_frequency}".encode()
    ).hexdigest()[:16]
    folder = cache_root(data_cfg) / "tokenizers" / key
    if not (folder / "tokenizer.json").exists():
        lines = corpus.lines("train")
        if progress:
            print(f"sleeptrain: training a {cfg.vocab_size}-token BPE on {len(lines):,} lines (cached for later runs)",
                  file=sys.stderr, flush=True)
        tokenizer = train_bpe(lines, cfg.vocab_size, cfg.min_frequency, progress)
        if progress and len(tokenizer) < cfg.vocab_size:
            print(f"sleeptrain: note: the BPE has {len(tokenizer):,} tokens, fewer than tokenizer.vocab_size="
                  f"{cfg.vocab_size:,}: the training text holds no more merges (with tokenizer.min_frequency="
                  f"{cfg.min_frequency})", file=sys.stderr, flush=True)
        with atomic_dir(folder) as tmp:
            tokenizer.save_pretrained(str(tmp))
    tokenizer = load_tokenizer(folder, need_mask=need_mask)
    return tokenizer if need_mask else use_causal_template(tokenizer)


def tokenizer_fingerprint(tokenizer) -> str:
    """Content hash of the tokenizer (vocabulary, merges, normalisation, specials)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]
