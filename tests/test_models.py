import pytest
import torch

from sleeptrain.config import ModelConfig
from sleeptrain.lm.losses import per_sample_loss, token_losses
from sleeptrain.lm.models import build_model, count_parameters
from sleeptrain.presets import load_config

SPECIAL = {"bos": 0, "eos": 2, "pad": 1}


@pytest.mark.parametrize("preset,low,high", [("tiny", 0.5e6, 1.5e6), ("small", 8e6, 12e6), ("gpt2-small", 8e6, 12e6),
                                             ("roberta-small", 8e6, 12e6)])
def test_preset_sizes(preset, low, high):
    cfg = load_config([f"model={preset}"]).config
    torch.manual_seed(0)
    n = count_parameters(build_model(cfg.model, 1000, 128, SPECIAL))["non_embedding"]
    assert low < n < high, n


def test_roberta_pln_small_is_climb_sleeps_model():
    """Upstream Peter-Shamoun/CLIMB-Sleep conf/model/roberta_pln_small.yaml (+ conf/config.yaml: vocab 8192,
    lr 1e-3): RobertaPreLayerNorm, 8 layers x 256, 8 heads, MLP 2048, eps 1e-5, untied embeddings, dropout 0.1."""
    cfg = load_config(["model=roberta-pln-small"]).config
    model = build_model(cfg.model, 8192, 128, SPECIAL)
    hf = model.config
    assert type(model).__name__ == "RobertaPreLayerNormForMaskedLM" and cfg.model.is_masked_lm
    assert (hf.num_hidden_layers, hf.hidden_size, hf.num_attention_heads, hf.intermediate_size) == (8, 256, 8, 2048)
    assert hf.layer_norm_eps == 1e-5 and hf.tie_word_embeddings is False and cfg.train.lr == 1e-3
    assert hf.hidden_dropout_prob == hf.attention_probs_dropout_prob == 0.1  # the HF default upstream keeps
    assert model.lm_head.decoder.weight is not model.roberta_prelayernorm.embeddings.word_embeddings.weight


def test_base_is_about_100m_non_embedding():
    from transformers import AutoModelForCausalLM

    from sleeptrain.lm.models import build_hf_config

    cfg = load_config(["model=base"]).config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(build_hf_config(cfg.model, 16_000, 128, SPECIAL))
    assert 90e6 < count_parameters(model)["non_embedding"] < 115e6


def test_llama_options_reach_the_hf_config():
    cfg = ModelConfig(hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=24, intermediate_size=96, num_layers=1,
                      tie_embeddings=False)
    model = build_model(cfg, 300, 32, SPECIAL)
    hf = model.config
    assert (hf.num_key_value_heads, hf.head_dim, hf.tie_word_embeddings) == (2, 24, False)
    assert model.model.layers[0].self_attn.k_proj.out_features == 2 * 24
    assert model.lm_head.weight is not model.model.embed_tokens.weight


@pytest.mark.parametrize("arch", ["llama", "gpt2", "roberta", "roberta_prelayernorm"])
def test_our_token_losses_match_the_models_own_loss(arch):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1)
    model = build_model(cfg, 300, 16, SPECIAL).eval()
    ids = torch.randint(5, 300, (3, 16))
    attn = torch.ones_like(ids)
    attn[1, 10:] = 0
    labels = ids.masked_fill(attn == 0, -100)
    masked = cfg.is_masked_lm
    if masked:
        labels = labels.masked_fill(torch.rand(ids.shape) > 0.3, -100)
    out = model(input_ids=ids, attention_mask=attn, labels=labels)
    loss, mask = token_losses(out.logits, labels, causal=not masked)
    assert torch.allclose(loss.sum() / mask.sum(), out.loss, atol=1e-5)
    per_sample = per_sample_loss(loss, mask)
    for i in range(3):
        one = model(input_ids=ids[i:i + 1], attention_mask=attn[i:i + 1], labels=labels[i:i + 1]).loss
        assert torch.allclose(per_sample[i], one, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_causal_models_ignore_right_padding_without_a_mask(arch):
    """The loop drops the attention mask of right-padded causal batches (fast SDPA path): real tokens must get the
    same logits either way."""
    from sleeptrain.lm.loop import right_padded

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
                        100, 16, SPECIAL).eval()
    ids = torch.randint(3, 100, (3, 16))
    mask = torch.ones(3, 16, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = SPECIAL["pad"]
    assert right_padded(mask) and not right_padded(mask.flip(1))
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=mask).logits
        unmasked = model(input_ids=ids).logits
    real = mask.bool()
    torch.testing.assert_close(masked[real], unmasked[real], rtol=1e-5, atol=1e-5)


def test_gemma_presets_have_the_paper_shapes():
    import torch

    from sleeptrain.lm.models import build_model, count_parameters
    from sleeptrain.presets import load_config

    special = {"bos": 0, "eos": 2, "pad": 1}
    # the paper's parameter counts (GPT-2 vocabulary) include minGemma's MLP biases, which Gemma has not:
    # 221.3M (Baby10M best, L22) and 155.4M (Baby100M best, L16)
    for preset, paper, biases in (("mingemma-10m", 221.3e6, 22 * (2 * 2688 + 672)),
                                  ("mingemma-100m", 155.4e6, 16 * (2 * 2448 + 612))):
        cfg = load_config([f"model={preset}", "schedule=forgetter"]).config
        with torch.device("meta"):
            model = build_model(cfg.model, 50257, cfg.data.seq_len, special)
        assert abs(count_parameters(model)["total"] + biases - paper) < 0.1e6, preset
        assert type(model).__name__ == "GemmaForCausalLM" and model.config.hidden_act == "gelu_python"
    cfg = load_config(["model=mingemma-cpu"]).config
    model = build_model(cfg.model, 400, 32, special)
    ids = torch.randint(3, 400, (2, 32))
    assert model(input_ids=ids).logits.shape == (2, 32, 400)
    assert model.lm_head.weight is model.model.embed_tokens.weight
