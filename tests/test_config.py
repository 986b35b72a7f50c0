import pytest

from sleeptrain.config import Config, iter_keys
from sleeptrain.errors import ConfigError
from sleeptrain.presets import (GROUPS, config_from_yaml, config_to_yaml, help_text, list_presets, load_config)


@pytest.mark.parametrize("group,name", [(g, n) for g in GROUPS for n in list_presets(g)])
def test_every_preset_parses_and_validates(group, name):
    extra = ["data.path=/tmp/somewhere"] if group == "data" and name in ("babylm", "hf") else []
    loaded = load_config([f"{group}={name}", *extra])
    assert loaded.presets[group] == name
    assert list_presets(group)[name], f"{group}/{name}.yaml needs a description comment on its first line"


def test_defaults_are_the_demo():
    cfg = load_config([]).config
    assert (cfg.data.source, cfg.model.arch, cfg.schedule.name) == ("generated", "llama", "sleep")
    assert cfg.sleep.ops == ["replay"] and cfg.schedule.n_cycles == 5


def test_overrides_apply_after_presets_whatever_their_order():
    cfg = load_config(["train.lr=0.5", "model=small", "seed=7", "train.trackers=[tensorboard]"]).config
    assert cfg.train.lr == 0.5 and cfg.model.hidden_size == 256 and cfg.seed == 7
    assert cfg.train.trackers == ["tensorboard"]


def test_null_clears_an_optional_value():
    assert load_config(["model.num_kv_heads=null"]).config.model.num_kv_heads is None


def test_paths_are_resolved(tmp_path):
    cfg = load_config([f"run.dir={tmp_path}/x/../run"]).config
    assert cfg.run.dir == str(tmp_path / "run")


def test_a_preset_file_path_works(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("model:\n  hidden_size: 96\n  num_heads: 3\n  num_kv_heads: 3\n")
    assert load_config([f"model={preset}"]).config.model.hidden_size == 96


@pytest.mark.parametrize("args,expected", [
    (["train.lrr=1"], "train.lrr: unknown key; did you mean 'train.lr'?"),
    (["nonsense.key=1"], "nonsense.key: unknown key"),
    (["train.lr=fast"], "train.lr: expected float, got 'fast'"),
    (["train.batch_size=1.5"], "train.batch_size: expected int"),
    (["train.lr=-1"], "train.lr: must be > 0"),
    (["model.arch=lama"], "model.arch: 'lama' is not allowed; choose one of llama, gemma, gpt2, roberta"),
    (["model=giant"], "model: unknown preset 'giant'; available:"),
    (["model=/nope/x.yaml"], "model: preset file"),
    (["justaword"], "expected group=preset or key=value"),
    (["data=babylm"], "data.path: required with data.source=babylm"),
    (["train.micro_batch_size=5"], "train.micro_batch_size: 5 must divide train.batch_size=32"),
    (["model.num_heads=3"], "model.num_heads: 3 does not divide model.hidden_size=128"),
    (["model.num_kv_heads=3"], "model.num_kv_heads: 3 must divide model.num_heads=4"),
    (["model.dropout=1.5"], "model.dropout: must be in [0, 1)"),
    (["schedule.epochs=0", "schedule=epochs"], "schedule.epochs: must be > 0"),
    (["model.max_positions=16"], "model.max_positions: 16 is smaller than data.seq_len=128"),
    (["train.precision=fp16", "train.device=cpu"], "train.precision: fp16 needs a GPU"),
    (["model=gpt2-tiny", "model.head_dim=16"], "only supported with model.arch=llama"),
    (["tokenizer.vocab_size=100"], "tokenizer.vocab_size: must be >= 300"),
    (["seed=-2"], "seed: must be >= 0"),
])
def test_bad_settings_give_one_line_naming_the_key(args, expected):
    with pytest.raises(ConfigError) as info:
        load_config(args)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_yaml_round_trip():
    cfg = load_config(["model=roberta-tiny", "train.lr=0.01"]).config
    assert config_from_yaml(config_to_yaml(cfg)) == cfg


def test_help_lists_groups_presets_and_every_key():
    text = help_text()
    for group in GROUPS:
        assert f"{group}=" in text
        for name in list_presets(group):
            assert name in text
    for key, *_ in iter_keys(Config):
        assert key in text


def test_the_readme_names_every_preset_and_schedules_md_every_schedule():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme, schedules = (root / "README.md").read_text(), (root / "docs" / "SCHEDULES.md").read_text()
    missing = [f"{g}={n}" for g in GROUPS for n in list_presets(g) if f"`{n}`" not in readme]
    assert not missing, f"presets the README's Concepts do not name: {missing}"
    assert not [n for n in list_presets("schedule") if f"`{n}`" not in schedules]
