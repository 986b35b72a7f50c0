"""Load any Hugging Face causal or masked LM folder for evaluation: float32, local files only, no remote code, with
one-line errors naming what is missing. Below the harness and the tasks (a task that loads another folder, as the
BabyLM AoA task loads every checkpoint, imports it from here)."""

from __future__ import annotations

from pathlib import Path

import torch

from sleeptrain.errors import ConfigError, DataError
from sleeptrain.evaluate.tasks import LoadedModel

MASKED_MODEL_TYPES = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "xlm-roberta",
                      "camembert", "modernbert", "ltg_bert", "roberta-prelayernorm"}


def is_masked_lm_config(config) -> bool:
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return True
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return False
    return config.model_type in MASKED_MODEL_TYPES


def load_model_folder(path: str | Path, device: str = "auto") -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar: noise before a one-line error or a table
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"MODEL_DIR: {str(folder)!r} is not a folder")
    if not (folder / "config.json").is_file():
        raise DataError(f"MODEL_DIR: no config.json in {str(folder)!r} (expected a save_pretrained folder)")
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"MODEL_DIR: cannot read {folder / 'config.json'}: {str(exc).splitlines()[0]}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"MODEL_DIR: no usable tokenizer in {str(folder)!r} (save one with "
                        f"tokenizer.save_pretrained): {str(exc).splitlines()[0]}") from None
    masked = is_masked_lm_config(config)
    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    from safetensors import SafetensorError

    try:
        model = auto.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, SafetensorError) as exc:
        raise DataError(f"MODEL_DIR: cannot load the model weights in {str(folder)!r}: "
                        f"{str(exc).splitlines()[0]}") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no GPU is visible")
    target = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    return LoadedModel(model.to(target).eval(), tokenizer, masked, folder)
