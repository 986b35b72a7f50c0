"""Model folders that transformers 4.x and 5.x read alike: `save_pretrained`, then the keys transformers 4 needs.

transformers 5 writes `rope_parameters` and `dtype` into config.json, names the tokenizer class `TokenizersBackend`
and leaves the byte-level prefix space to tokenizer.json. transformers 4 (the BabyLM evaluation pipeline pins 4.51.3)
reads `rope_theta` and `torch_dtype`, does not know that class, and takes `add_prefix_space` from
tokenizer_config.json, defaulting to False — so without these keys it would build RoPE at its default base and
tokenize "the" as `the` where training saw `Ġthe`. Both keys are added beside the transformers-5 ones, which
transformers 5 reads first, so a folder loads the same in either. The keys of the process that loaded the tokenizer
(`local_files_only`, `is_local`) are dropped: a folder says nothing about the machine it was written on.
`tools/check_transformers4.py` loads every architecture's folder under transformers 4.51.3 and compares token ids and
logits with transformers 5.
"""

from __future__ import annotations

import json
from pathlib import Path

MACHINE_LOCAL_KEYS = ("local_files_only", "is_local", "cache_dir", "force_download", "token", "revision")
PLAIN_FAST_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")  # v5's name, v4's name of the same class


def save_model_folder(model, tokenizer, folder: Path) -> None:
    """`save_pretrained` model + tokenizer into `folder`, then make its files readable by transformers 4 as well."""
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    make_portable(Path(folder))


def make_portable(folder: Path) -> None:
    """Add the transformers-4 keys to a saved folder's config.json and tokenizer_config.json; drop machine-local keys."""
    config_file, tokenizer_file = folder / "config.json", folder / "tokenizer_config.json"
    if config_file.is_file():
        _rewrite(config_file, _portable_config)
    if tokenizer_file.is_file():
        pre_tokenizer = _pre_tokenizer(folder / "tokenizer.json")
        _rewrite(tokenizer_file, lambda cfg: _portable_tokenizer_config(cfg, pre_tokenizer))


def causal_template(folder: Path) -> bool:
    """A causal model's tokenizer.json whose post-processor appends an end token (`<s> $A </s>`, sleeptrain's before
    2026-12-02): rewritten to `<s> $A` as runs save it now (the training tape never used the post-processor, so this
    changes no training and no score of sleeptrain's; `tokenizer(text)` then ends with the text). True if rewritten."""
    config, tok_file = folder / "config.json", folder / "tokenizer.json"
    if not (config.is_file() and tok_file.is_file()):
        return False
    architectures = json.loads(config.read_text()).get("architectures") or []
    if not architectures or any(a.endswith("ForMaskedLM") for a in architectures):
        return False
    data = json.loads(tok_file.read_text())
    post = data.get("post_processor") or {}
    single = post.get("single") or [] if post.get("type") == "TemplateProcessing" else []
    names = [next(iter(piece.values())).get("id") for piece in single]
    if names != ["<s>", "A", "</s>"]:
        return False
    bos, seq_a, eos = single
    post["single"] = [bos, seq_a]
    post["pair"] = [bos, seq_a, eos, bos, {"Sequence": {"id": "B", "type_id": 1}}]
    tok_file.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    return True


def _rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data), indent=2, sort_keys=True) + "\n")


def _portable_config(cfg: dict) -> dict:
    rope = cfg.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in cfg:
        cfg["rope_theta"] = rope["rope_theta"]
        if rope.get("rope_type", "default") != "default":
            cfg.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})
    if "dtype" in cfg and "torch_dtype" not in cfg:
        cfg["torch_dtype"] = cfg["dtype"]
    return cfg


def _pre_tokenizer(tokenizer_json: Path) -> dict | None:
    if not tokenizer_json.is_file():
        return None
    return json.loads(tokenizer_json.read_text()).get("pre_tokenizer")


def _portable_tokenizer_config(cfg: dict, pre_tokenizer: dict | None) -> dict:
    for key in MACHINE_LOCAL_KEYS:
        cfg.pop(key, None)
    if cfg.get("tokenizer_class") in PLAIN_FAST_TOKENIZERS:
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # transformers 5 maps this name to TokenizersBackend
    prefix = _prefix_space(pre_tokenizer)
    if prefix is not None:
        cfg["add_prefix_space"] = prefix
    return cfg


def _prefix_space(pre_tokenizer: dict | None) -> bool | None:
    """The ByteLevel pre-tokenizer's add_prefix_space (also inside a Sequence), or None if it has none."""
    if not isinstance(pre_tokenizer, dict):
        return None
    if pre_tokenizer.get("type") == "ByteLevel":
        return bool(pre_tokenizer.get("add_prefix_space", False))
    for inner in pre_tokenizer.get("pretokenizers", []) or []:
        found = _prefix_space(inner)
        if found is not None:
            return found
    return None
