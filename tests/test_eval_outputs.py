"""Issue 38: `sleeptrain eval` never overwrites a result silently, checks that it can write before scoring, and
always shows its results — the README's own `eval RUN/final blimp.path=...` used to overwrite the run's final
evaluation, and a read-only folder scored everything and then threw the scores away."""

from __future__ import annotations

import errno
import json

import pytest

from conftest import save_tiny_llama

from sleeptrain.cli import main
from sleeptrain.data.grammar import generate_minimal_pairs, write_minimal_pairs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("model") / "final")


@pytest.fixture
def pairs(tmp_path):
    return write_minimal_pairs(generate_minimal_pairs(3, seed=0), tmp_path / "agreement")


def test_each_evaluation_gets_its_own_file_and_an_existing_one_is_refused(model_dir, pairs, capsys):
    own = model_dir / "eval" / "results.json"          # what a training run's final evaluation wrote
    own.parent.mkdir(exist_ok=True)
    own.write_text('{"blimp": {"overall": 0.82}}')
    words = ["eval", str(model_dir), f"blimp.path={pairs}", "perplexity.enabled=false", "progress=false"]
    assert main(words) == 0
    shown = capsys.readouterr().out
    written = model_dir / "eval" / "results-blimp-agreement.json"
    assert f"results: {written}" in shown and "minimal pairs:" in shown
    assert json.loads(own.read_text()) == {"blimp": {"overall": 0.82}}   # the run's own result is untouched
    assert main([*words, "blimp.max_pairs=2"]) == 0                     # other options: another file
    assert (model_dir / "eval" / "results-blimp-agreement-max2.json").is_file()
    capsys.readouterr()
    assert main(words) == 2                                              # the same again: refused, one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out: " in err[0] and "exists (an earlier evaluation)" in err[0] and "overwrite=true" in err[0]
    assert main([*words, "overwrite=true"]) == 0


def test_an_unwritable_results_folder_is_refused_before_any_scoring(model_dir, pairs, capsys, monkeypatch, tmp_path):
    import tempfile

    import sleeptrain.evaluate.harness as harness

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    def never(*args, **kwargs):
        raise AssertionError("scored although the results could not be written")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(harness, "evaluate_model", never)
    code = main(["eval", str(model_dir), f"blimp.path={pairs}", "perplexity.enabled=false",
                 f"out={tmp_path / 'ro' / 'r.json'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "out: cannot write" in err[0] and "Permission denied" in err[0]


def test_results_that_cannot_be_written_after_all_are_printed(model_dir, pairs, capsys, monkeypatch, tmp_path):
    import sleeptrain.evaluate.harness as harness

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(harness, "atomic_write_text", full)
    code = main(["eval", str(model_dir), f"blimp.path={pairs}", "perplexity.enabled=false", "progress=false",
                 f"out={tmp_path / 'r.json'}"])
    captured = capsys.readouterr()
    assert code == 2 and "the results are printed above" in captured.err
    assert json.loads(captured.out)["blimp"]["pairs"] == 21
