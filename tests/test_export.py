"""`sleeptrain export`: a run's final/ and chck_<N> folders as one git repository, a branch each; --push via the Hub API."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from sleeptrain.cli import main
from sleeptrain.data.tokenizer import train_bpe
from sleeptrain.export import ExportError, export_repository, model_folders, push

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
    assert export_repository(run_dir, dest) == ["main", "chck_10K", "chck_300K", "chck_2M"]
    assert set(git(dest, "branch", "--format=%(refname:short)").split()) == {"main", "chck_10K", "chck_300K",
                                                                              "chck_2M"}
    for branch, folder in (("main", "final"), ("chck_10K", "chck_10K"), ("chck_2M", "chck_2M")):
        git(dest, "checkout", "-q", branch)
        model = AutoModelForCausalLM.from_pretrained(dest)
        source = AutoModelForCausalLM.from_pretrained(run_dir / folder)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))
        assert AutoTokenizer.from_pretrained(dest)("the cat")["input_ids"][0] == 0  # BOS first
        assert f"`{branch}`" in (dest / "README.md").read_text()
        assert "*.safetensors filter=lfs" in (dest / ".gitattributes").read_text()
    assert git(dest, "status", "--porcelain") == ""


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
    assert uploads == [("main", "final"), ("chck_10K", "chck_10K"), ("chck_300K", "chck_300K"), ("chck_2M", "chck_2M")]
    assert [kw["branch"] for name, _, kw in hub.calls if name == "create_branch"] == ["chck_10K", "chck_300K", "chck_2M"]
    assert hub.calls[0][0] == "create_repo"


def test_cli_errors_are_one_line(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir)]) == 2
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "DEST" in err[0] and "RUN_DIR" in err[1]
    assert main(["export", str(run_dir), str(tmp_path / "out")]) == 0


def test_commits_use_the_users_git_identity_and_ours_only_without_one(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL",
                 "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(name, raising=False)
    export_repository(run_dir, tmp_path / "anonymous")
    assert git(tmp_path / "anonymous", "log", "-1", "--format=%ae").strip() == "sleeptrain@localhost"
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / ".gitconfig").write_text("[user]\n\tname = Ada\n\temail = ada@example.org\n")
    export_repository(run_dir, tmp_path / "mine")
    assert git(tmp_path / "mine", "log", "-1", "--format=%ae").strip() == "ada@example.org"
