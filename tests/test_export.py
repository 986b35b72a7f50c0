"""`sleeptrain export`: a run's final/ and chck_<N> folders as one git repository, a branch each; --push via the Hub API."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from sleeptrain.cli import main
from sleeptrain.data.tokenizer import train_bpe
from sleeptrain.export import ExportError, export_repository, lfs_available, model_folders, push

FOLDERS = ("final", "chck_2M", "chck_10K", "chck_300K")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    tokenizer = train_bpe(["the cat sleeps", "a dog runs home"] * 20, vocab_size=300)
    for i, name in enumerate(FOLDERS):
        torch.manual_seed(i)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
        model.save_pretrained(run / name)
        tokenizer.save_pretrained(run / name)
    (run / "checkpoints").mkdir()  # other folders of a run are not model revisions
    return run


def git(dest: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(dest), *args], capture_output=True, text=True, check=True).stdout


def test_branches_in_word_order(run_dir):
    assert [b for b, _ in model_folders(run_dir)] == ["main", "chck_10K", "chck_300K", "chck_2M"]


def test_every_branch_holds_its_folder_and_loads(run_dir, tmp_path):
    dest = tmp_path / "repo"
    assert export_repository(run_dir, dest, lfs=False) == ["main", "chck_10K", "chck_300K", "chck_2M"]
    assert set(git(dest, "branch", "--format=%(refname:short)").split()) == {"main", "chck_10K", "chck_300K",
                                                                              "chck_2M"}
    for branch, folder in (("main", "final"), ("chck_10K", "chck_10K"), ("chck_2M", "chck_2M")):
        git(dest, "checkout", "-q", branch)
        model = AutoModelForCausalLM.from_pretrained(dest)
        source = AutoModelForCausalLM.from_pretrained(run_dir / folder)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))
        assert AutoTokenizer.from_pretrained(dest)("the cat")["input_ids"][0] == 0  # BOS first
        assert f"`{branch}`" in (dest / "README.md").read_text()
        assert not (dest / ".gitattributes").exists()  # --no-lfs: no LFS routing the weights would not follow
    assert git(dest, "status", "--porcelain") == ""


def test_history_is_in_word_order_each_checkpoint_a_commit_of_its_own_state(run_dir, tmp_path):
    dest = tmp_path / "repo"
    export_repository(run_dir, dest, lfs=False)
    first_parent = git(dest, "log", "--format=%s", "main").split("\n")
    assert [line.split(":")[0] for line in first_parent if line] == ["main", "chck_2M", "chck_300K", "chck_10K"]
    assert git(dest, "rev-parse", "chck_300K^") == git(dest, "rev-parse", "chck_10K")
    assert git(dest, "rev-parse", "main^") == git(dest, "rev-parse", "chck_2M")
    assert git(dest, "rev-list", "--count", "chck_10K").strip() == "1"


def fake_path_without_git_lfs(tmp_path: Path) -> str:
    """A PATH holding git (and python) but no git-lfs."""
    import shutil
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    (bin_dir / "python").symlink_to(sys.executable)
    return str(bin_dir)


def test_without_git_lfs_the_export_is_refused_before_anything_is_written(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", fake_path_without_git_lfs(tmp_path))
    assert not lfs_available()
    dest = tmp_path / "out"
    assert main(["export", str(run_dir), str(dest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "git-lfs is not installed" in err[0] and "--no-lfs" in err[0] and "--push" in err[0]
    assert not dest.exists()
    assert main(["export", str(run_dir), str(dest), "--no-lfs"]) == 0


@pytest.mark.skipif(not lfs_available(), reason="git-lfs is not installed here (apt install git-lfs)")
def test_with_git_lfs_the_weights_are_committed_as_lfs_pointers(run_dir, tmp_path):
    dest = tmp_path / "repo"
    export_repository(run_dir, dest)
    assert "*.safetensors filter=lfs" in (dest / ".gitattributes").read_text()
    for branch in ("main", "chck_10K"):
        blob = git(dest, "show", f"{branch}:model.safetensors")
        assert blob.startswith("version https://git-lfs.github.com/spec/v1"), blob[:80]
    assert "model.safetensors" in git(dest, "lfs", "ls-files", "--name-only")


def test_the_model_card_holds_config_data_words_results_and_licence(tmp_path):
    import json

    from sleeptrain.model_card import model_card

    run = tmp_path / "run"
    (run / "chck_1M" / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {arch: llama, num_layers: 2, hidden_size: 64, num_heads: 2}\n"
                                     "schedule: {name: climb_sleep}\nsleep: {ops: [replay, downscale]}\n"
                                     "data: {source: babylm, path: /home/ada/corpora/babylm-10m, seq_len: 128}\n")
    (run / "run.json").write_text(json.dumps({"sources": {"train": {"childes.train": {"words": 1200, "tokens": 1500}}},
                                              "sleeptrain": "0.1.0"}))
    (run / "summary.json").write_text(json.dumps({"words_seen": 3_000_000, "steps": 900, "tokens": 4_000_000,
                                                  "final_val_loss": 4.1, "final_test_loss": 4.2,
                                                  "blimp_overall": 0.61, "parameters": {"total": 1234567}}))
    (run / "chck_1M" / "eval" / "milestone.json").write_text(json.dumps(
        {"test_loss": 4.5, "blimp": 0.55, "pairs": 13400, "max_pairs_per_paradigm": 200}))
    card = model_card(run, "main", ["main", "chck_1M"], run / "final", "cc-by-4.0")
    for needle in ("license: cc-by-4.0", "3,000,000 words", "llama, 2 layers x 64", "`climb_sleep`", "`downscale`",
                   "`childes.train`: 1,200 words", "Test loss: 4.2000", "Dev loss: 4.1000", "1,234,567 parameters",
                   "`cc-by-4.0`", ".../babylm-10m"):
        assert needle in card, needle
    assert "/home/ada" not in card
    chck = model_card(run, "chck_1M", ["main", "chck_1M"], run / "chck_1M")
    assert "after 1M words" in chck and "Test loss: 4.5000" in chck and "13,400 pairs" in chck
    assert "license: unknown" in chck and "--license ID" in chck


def test_refuses_a_non_empty_destination_and_a_run_without_final(run_dir, tmp_path):
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_repository(run_dir, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    unfinished = tmp_path / "unfinished"
    (unfinished / "chck_1M").mkdir(parents=True)
    (unfinished / "chck_1M" / "config.json").write_text("{}")
    with pytest.raises(ExportError, match="no final/.*chck_1M"):
        model_folders(unfinished)


class FakeHub:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_push_uploads_each_folder_to_its_branch(run_dir):
    hub = FakeHub()
    assert push(run_dir, "me/model", api=hub) == ["main", "chck_10K", "chck_300K", "chck_2M"]
    uploads = [(kw["revision"], Path(kw["folder_path"]).name) for name, _, kw in hub.calls if name == "upload_folder"]
    assert uploads == [("chck_10K", "chck_10K"), ("chck_300K", "chck_300K"), ("chck_2M", "chck_2M"), ("main", "final")]
    made = [(kw["branch"], kw["revision"]) for name, _, kw in hub.calls if name == "create_branch"]
    assert made == [("chck_10K", None), ("chck_300K", "chck_10K"), ("chck_2M", "chck_300K")]  # each from the one before
    assert hub.calls[0][0] == "create_repo"


def test_cli_errors_are_one_line(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir)]) == 2
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "DEST" in err[0] and "RUN_DIR" in err[1]
    assert main(["export", str(run_dir), str(tmp_path / "out"), "--no-lfs", "--license", "MIT!"]) == 2
    assert "--license" in capsys.readouterr().err
    assert main(["export", str(run_dir), str(tmp_path / "out"), "--no-lfs"]) == 0


def test_commits_use_the_users_git_identity_and_ours_only_without_one(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL",
                 "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(name, raising=False)
    export_repository(run_dir, tmp_path / "anonymous", lfs=False)
    assert git(tmp_path / "anonymous", "log", "-1", "--format=%ae").strip() == "sleeptrain@localhost"
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / ".gitconfig").write_text("[user]\n\tname = Ada\n\temail = ada@example.org\n")
    export_repository(run_dir, tmp_path / "mine", lfs=False)
    assert git(tmp_path / "mine", "log", "-1", "--format=%ae").strip() == "ada@example.org"
