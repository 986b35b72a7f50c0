"""Saved model folders: transformers-4 keys, no machine-local keys, the causal tokenizer template (issue 38 item 2)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sleeptrain.data.tokenizer import train_bpe, use_causal_template
from sleeptrain.lm.hf_folder import make_portable, save_model_folder

ROOT = Path(__file__).resolve().parents[1]
LINES = ["the dog runs .", "a cat sleeps .", "the birds sing ."] * 50


def tiny_gemma(tokenizer):
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(0)
    return GemmaForCausalLM(GemmaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=64, hidden_act="gelu_python",
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0})).eval()


def test_a_saved_folder_carries_the_keys_transformers_4_reads_and_no_machine_local_ones(tmp_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "cache"
    train_bpe(LINES, vocab_size=300).save_pretrained(folder)
    loaded = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)  # as the tokenizer cache is read
    save_model_folder(tiny_gemma(loaded), loaded, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    tok_config = json.loads((tmp_path / "model" / "tokenizer_config.json").read_text())
    assert config["rope_theta"] == 1000.0 and config["torch_dtype"] == config["dtype"] == "float32"
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast" and tok_config["add_prefix_space"] is True
    assert not {"local_files_only", "is_local"} & set(tok_config)


def test_a_portable_folder_loads_identically_under_transformers_5(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = use_causal_template(train_bpe(LINES, vocab_size=300))
    model = tiny_gemma(tokenizer)
    save_model_folder(model, tokenizer, tmp_path / "m")
    make_portable(tmp_path / "m")  # idempotent
    again_tok = AutoTokenizer.from_pretrained(str(tmp_path / "m"))
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m")).eval()
    ids = tokenizer("the dog runs")["input_ids"]
    assert again_tok("the dog runs")["input_ids"] == ids
    with torch.no_grad():
        x = torch.tensor([ids])
        assert torch.equal(again(input_ids=x).logits, model(input_ids=x).logits)


def test_the_causal_template_adds_bos_and_no_end_token_and_leaves_other_tokenizers_alone():
    masked = train_bpe(LINES, vocab_size=300)
    assert masked.convert_ids_to_tokens(masked("the dog")["input_ids"]) == ["<s>", "Ġthe", "Ġdog", "</s>"]
    causal = use_causal_template(train_bpe(LINES, vocab_size=300))
    assert causal.convert_ids_to_tokens(causal("the dog")["input_ids"]) == ["<s>", "Ġthe", "Ġdog"]
    assert causal("the dog", add_special_tokens=False)["input_ids"] == masked("the dog", add_special_tokens=False)[
        "input_ids"]
    before = causal.backend_tokenizer.to_str()
    assert use_causal_template(causal).backend_tokenizer.to_str() == before  # not ours any more: untouched


def _pypi_reachable() -> bool:
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "tokenizers"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "0.21.1" in done.stdout


@pytest.mark.slow
def test_every_architecture_loads_the_same_under_the_babylm_pipelines_transformers_4(tmp_path):
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable: tools/check_transformers4.py needs to install transformers 4.51.3")
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_transformers4.py"), "--venv",
                           str(tmp_path / "venv")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.startswith("transformers 4.51.3")
    assert done.stdout.count(" ok") == 5, done.stdout


def test_export_rewrites_an_older_causal_tokenizer_and_says_so(tmp_path, capsys):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sleeptrain.export import export_repository

    old = train_bpe(LINES, vocab_size=300)  # the template runs saved before 2026-12-02: <s> $A </s>
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(old), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2))
    model.save_pretrained(tmp_path / "run" / "final")
    old.save_pretrained(tmp_path / "run" / "final")
    export_repository(tmp_path / "run", tmp_path / "repo", lfs=False)
    assert "adds <s> only" in capsys.readouterr().out
    tok = AutoTokenizer.from_pretrained(tmp_path / "repo")
    assert tok.convert_ids_to_tokens(tok("the dog")["input_ids"]) == ["<s>", "Ġthe", "Ġdog"]
    before = AutoTokenizer.from_pretrained(tmp_path / "run" / "final")
    assert before("the dog")["input_ids"][-1] == before.eos_token_id  # the run's own folder is untouched
