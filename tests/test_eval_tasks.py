"""The evaluation task type: a task registered from outside (the docs' toy task) runs in `sleeptrain eval` beside
the built-in ones, with its own options section, validated like every option; unregistered, its keys are unknown."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import save_tiny_llama

from sleeptrain.config import help_field
from sleeptrain.data.grammar import generate_minimal_pairs, write_minimal_pairs
from sleeptrain.errors import ConfigError
from sleeptrain.evaluate.config import EvalCommandConfig, eval_command_schema
from sleeptrain.evaluate.harness import run_eval
from sleeptrain.evaluate.tasks import TASKS, EvalTask, register_task, task_classes, unregister_task
from sleeptrain.presets import help_text, load_overrides


@dataclass
class LengthOptions:
    enabled: bool = help_field("score the sentences' lengths", default=True)
    max_sentences: int = help_field("at most this many sentences", default=5)

    def __post_init__(self) -> None:
        if self.max_sentences < 1:
            raise ConfigError(f"length.max_sentences: must be >= 1, got {self.max_sentences}")


class LengthTask(EvalTask):
    """The docs' toy task (docs/EVALUATION.md): mean log-probability per token of a few fixed sentences."""

    name = "length"
    description = "mean log-probability per token of a few fixed sentences"
    options = LengthOptions

    def prepare(self, options, ctx):
        return ["the dog runs .", "a cat sleeps .", "the birds sing ."][: options.max_sentences]

    def run(self, model, options, data, ctx):
        from sleeptrain.evaluate.scoring import sentence_scores

        scores = sentence_scores(model.model, model.tokenizer, data, model.masked, ctx.opts.batch_size)
        tokens = [len(model.tokenizer(s)["input_ids"]) for s in data]
        return {"sentences": len(data), "mean_logprob_per_token": float(sum(scores) / sum(tokens))}


@pytest.fixture
def length_task():
    register_task(LengthTask)
    yield LengthTask
    unregister_task("length")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("model"))


def test_a_registered_task_runs_with_its_own_section(length_task, model_dir, tmp_path):
    pairs = write_minimal_pairs(generate_minimal_pairs(4, seed=0), tmp_path / "pairs")
    schema = eval_command_schema()
    assert schema is not EvalCommandConfig and "length.max_sentences" in help_text(schema)
    opts = load_overrides(schema, [f"blimp.path={pairs}", "perplexity.enabled=false", "length.max_sentences=2",
                                   f"out={tmp_path / 'results.json'}", "progress=false"])
    results, out = run_eval(model_dir, opts)
    assert list(results) == ["model", "model_type", "precision", "blimp", "length", "seconds"]
    assert results["length"]["sentences"] == 2 and results["length"]["mean_logprob_per_token"] < 0
    assert json.loads(Path(out).read_text())["length"] == results["length"]
    with pytest.raises(ConfigError, match="length.max_sentences: must be >= 1"):
        load_overrides(schema, ["length.max_sentences=0"])
    off = load_overrides(schema, [f"blimp.path={pairs}", "perplexity.enabled=false", "length.enabled=false",
                                  f"out={tmp_path / 'off.json'}", "progress=false"])
    assert "length" not in run_eval(model_dir, off)[0]


def test_built_in_tasks_come_first_and_registration_is_checked(length_task):
    assert [cls.name for cls in task_classes()][:2] == ["blimp", "perplexity"]
    with pytest.raises(ValueError, match="already registered"):
        register_task(LengthTask)

    class NoSwitch(EvalTask):
        name = "no_switch"
        options = dataclass(type("Opts", (), {"__annotations__": {"n": int}, "n": 1}))

    with pytest.raises(TypeError, match="enabled"):
        register_task(NoSwitch)
    assert "no_switch" not in TASKS


def test_an_unregistered_task_has_no_keys():
    schema = eval_command_schema()  # EvalCommandConfig plus the sections of the tasks registered now (babylm)
    assert issubclass(schema, EvalCommandConfig) and not hasattr(schema(), "length")
    with pytest.raises(ConfigError, match="length"):
        load_overrides(eval_command_schema(), ["length.max_sentences=2"])


class NeedsPath(EvalTask):
    """A task whose data must be given: in a training run's final evaluation it is recorded as skipped."""

    name = "needs_path"
    description = "refuses to run without a path"
    options = LengthOptions

    def prepare(self, options, ctx):
        raise ConfigError("needs_path.path: required")


def test_the_final_evaluation_runs_every_registered_task_and_records_what_it_skips(length_task, model_dir, tmp_path,
                                                                                    capsys):
    from sleeptrain.config import Config
    from sleeptrain.evaluate.config import run_eval_options
    from sleeptrain.evaluate.harness import evaluate_in_run, load_model_folder
    from sleeptrain.evaluate.minimal_pairs import load_minimal_pairs

    register_task(NeedsPath)
    try:
        cfg = Config()
        cfg.eval.method, cfg.eval.batch_size, cfg.eval.final_max_pairs = "pll_word_l2r", 7, 3
        opts = run_eval_options(cfg, max_pairs=cfg.eval.final_max_pairs, progress=False)
        assert (opts.batch_size, opts.blimp.method, opts.blimp.max_pairs, opts.progress) == (7, "pll_word_l2r", 3, False)
        pairs = write_minimal_pairs(generate_minimal_pairs(4, seed=0), tmp_path / "pairs")
        results = evaluate_in_run(load_model_folder(model_dir, "cpu"), opts,
                                  {"blimp": (load_minimal_pairs(pairs, 3), str(pairs))})
    finally:
        unregister_task("needs_path")
    assert [k for k in results if k in ("blimp", "perplexity", "length", "needs_path")] == ["blimp", "length",
                                                                                          "needs_path"]
    assert results["length"]["sentences"] == 3
    assert results["needs_path"] == {"skipped": "needs_path.path: required"}
    assert "task needs_path skipped: needs_path.path: required" in capsys.readouterr().err
