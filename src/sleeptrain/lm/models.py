"""Models built from config with Hugging Face transformers classes (no hub downloads).

- `llama`: causal decoder with RMSNorm, RoPE, grouped-query attention and a configurable head_dim (which also
  covers the minGemma shapes of the FORGETTER paper);
- `gemma`: Gemma-style causal decoder (HF `GemmaForCausalLM`): embeddings scaled by sqrt(hidden), RMSNorm with
  (1 + w), gated GELU MLP, grouped-query attention, RoPE, free head_dim, tied embeddings — the FORGETTER paper's
  minGemma family (differences in docs/SCHEDULES.md);
- `gpt2`: causal decoder with learned positions and LayerNorm;
- `roberta`: masked LM, post-LN as BERT/RoBERTa (positions start after the padding index, hence
  max_positions + 2);
- `roberta_prelayernorm`: the same masked LM with pre-LN blocks (HF `RobertaPreLayerNormForMaskedLM`) — the model
  CLIMB-Sleep trains (upstream `conf/model/roberta_pln_small.yaml`, `src/models/roberta.py`).
The models are plain `PreTrainedModel`s, so `save_pretrained` writes folders that `AutoModelForCausalLM` /
`AutoModelForMaskedLM` load as they are.
"""

from __future__ import annotations

import torch

from sleeptrain.config import ModelConfig
from sleeptrain.errors import ConfigError


def build_hf_config(cfg: ModelConfig, vocab_size: int, seq_len: int, special: dict[str, int | None]):
    from transformers import GPT2Config, LlamaConfig, RobertaConfig

    positions = cfg.max_positions or seq_len
    common = dict(vocab_size=vocab_size, bos_token_id=special["bos"], eos_token_id=special["eos"],
                  pad_token_id=special["pad"])
    if cfg.arch == "llama":
        return LlamaConfig(
            hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads or cfg.num_heads, head_dim=cfg.head_dim,
            max_position_embeddings=positions, rms_norm_eps=cfg.norm_eps, initializer_range=cfg.init_std,
            tie_word_embeddings=cfg.tie_embeddings, attention_dropout=cfg.dropout,
            rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta}, **common,
        )
    if cfg.arch == "gemma":
        from transformers import GemmaConfig

        return GemmaConfig(
            hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
            # exact (erf) GELU as minGemma's F.gelu: GemmaConfig turns "gelu" into the tanh approximation
            head_dim=cfg.head_dim or cfg.hidden_size // cfg.num_heads, hidden_act="gelu_python",
            max_position_embeddings=positions, rms_norm_eps=cfg.norm_eps, initializer_range=cfg.init_std,
            tie_word_embeddings=True, attention_dropout=cfg.dropout,
            rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta}, **common,
        )
    if cfg.arch == "gpt2":
        return GPT2Config(
            n_embd=cfg.hidden_size, n_layer=cfg.num_layers, n_head=cfg.num_heads, n_inner=cfg.intermediate_size,
            n_positions=positions, layer_norm_epsilon=cfg.norm_eps, initializer_range=cfg.init_std,
            resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, tie_word_embeddings=True,
            **common,
        )
    encoder = dict(
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=positions + 2, type_vocab_size=1,
        layer_norm_eps=cfg.norm_eps, initializer_range=cfg.init_std, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout, **common,
    )
    if cfg.arch == "roberta_prelayernorm":
        from transformers import RobertaPreLayerNormConfig

        return RobertaPreLayerNormConfig(tie_word_embeddings=cfg.tie_embeddings, **encoder)
    return RobertaConfig(tie_word_embeddings=True, **encoder)


def build_model(cfg: ModelConfig, vocab_size: int, seq_len: int, special: dict[str, int | None]) -> torch.nn.Module:
    """A freshly initialised model (initialisation uses torch's global RNG: seed before calling)."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    hf_config = build_hf_config(cfg, vocab_size, seq_len, special)
    auto = AutoModelForMaskedLM if cfg.is_masked_lm else AutoModelForCausalLM
    return auto.from_config(hf_config, attn_implementation="sdpa")


HF_MODEL_TYPES = {"llama": "llama", "gemma": "gemma", "gpt2": "gpt2", "roberta": "roberta",
                  "roberta-prelayernorm": "roberta_prelayernorm"}  # config.json model_type -> model.arch


def check_init_from(cfg: ModelConfig, vocab_size: int, seq_len: int) -> None:
    """Refuse a `model.init_from` folder the run cannot start from (its config.json only: before anything is
    written): another architecture than `model.arch`, fewer embedding rows than the tokenizer's tokens, fewer
    positions than `data.seq_len`."""
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(cfg.init_from, local_files_only=True)
    arch = HF_MODEL_TYPES.get(hf_config.model_type)
    if arch != cfg.arch:
        raise ConfigError(f"model.init_from: {cfg.init_from!r} holds a {hf_config.model_type!r} model; "
                          + (f"add model.arch={arch}" if arch else f"sleeptrain trains {', '.join(HF_MODEL_TYPES)}"))
    if hf_config.vocab_size < vocab_size:
        raise ConfigError(f"model.init_from: its embeddings have {hf_config.vocab_size} rows, fewer than the "
                          f"tokenizer's {vocab_size} tokens (give the model's own tokenizer: leave tokenizer.path unset)")
    positions = getattr(hf_config, "max_position_embeddings", None) or getattr(hf_config, "n_positions", None)
    if positions is not None and positions - (2 if cfg.is_masked_lm else 0) < seq_len:
        raise ConfigError(f"model.init_from: the model has {positions} positions, fewer than data.seq_len={seq_len} "
                          "needs; lower data.seq_len")


def initial_model(cfg: ModelConfig, vocab_size: int, seq_len: int, special: dict[str, int | None]) -> torch.nn.Module:
    """The model a run starts from: `model.init_from`'s pretrained weights (float32; checked by `check_init_from`
    when the run's data was loaded), or a fresh `build_model`."""
    if not cfg.init_from:
        return build_model(cfg, vocab_size, seq_len, special)
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    auto = AutoModelForMaskedLM if cfg.is_masked_lm else AutoModelForCausalLM
    return auto.from_pretrained(cfg.init_from, local_files_only=True, dtype=torch.float32, attn_implementation="sdpa")


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Total and non-embedding parameter counts (tied weights counted once)."""
    seen, total, embedding = set(), 0, 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if "embed" in name or "wte" in name or "wpe" in name or "lm_head" in name:
            embedding += p.numel()
    return {"total": total, "non_embedding": total - embedding}


def special_token_ids(tokenizer) -> dict[str, int | None]:
    return {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id}
