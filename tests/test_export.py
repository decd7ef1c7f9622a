"""The winning model as a standard transformers model: the exported directory loads with no
project code and predicts exactly what train.py predicted (linear head)."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import subprocess
import sys

import git
import pytest
import torch
import yaml
from transformers import AutoModelForTokenClassification, AutoTokenizer

from nerlab import export as export_module
from nerlab.config import parse_config_text
from nerlab.conll import to_iob2
from nerlab.corpora import View
from nerlab.errors import UserError
from nerlab.export import check_target_dir, export, export_model
from nerlab.gitops import RunBranch
from nerlab.metrics import read_predictions
from nerlab.model import tiny_encoder, tiny_tokenizer
from nerlab.modelio import load_tagger, save_tagger
from nerlab.results import append_row
from nerlab.store import Store
from nerlab.training import Tagger, tokenizer_texts
from tests.helpers import FINAL_BASE, ROOT, make_repo, run_script

VIEW = View("ncbi_disease", "ncbi_disease", ("Disease",))


def word_tags(model, tokenizer, tokens: list[str]) -> list[str]:
    """What a transformers user gets: the label of each word's first subword, IOB2-repaired."""
    enc = tokenizer(tokens, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        ids = model(**enc).logits[0].argmax(-1).tolist()
    tags: list[str | None] = [None] * len(tokens)
    for i, w in enumerate(enc.word_ids(0)):
        if w is not None and tags[w] is None:
            tags[w] = model.config.id2label[ids[i]]
    return to_iob2(tags)[0]


def test_export_predicts_what_train_py_predicted(trained_model, synthetic_home, tmp_path):
    model_dir, pred_file = trained_model
    export(model_dir, tmp_path / "hf")
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert type(model).__name__ == "ModernBertForTokenClassification"
    assert model.config.id2label == {0: "O", 1: "B-Disease", 2: "I-Disease"}
    assert model.config.label2id == {"O": 0, "B-Disease": 1, "I-Disease": 2}
    sentences = Store(synthetic_home / "synthetic").read("ncbi_disease", "dev")
    _, expected = read_predictions(pred_file)
    got = [word_tags(model, tokenizer, s.tokens) for s in sentences]
    assert sum(t != "O" for p in expected for t in p) > 100  # a model that tags something
    assert got == expected


def test_pipeline_loads_it_without_project_code(trained_model, tmp_path):
    export(trained_model[0], tmp_path / "hf")
    code = (
        "import sys, json\n"
        "from transformers import pipeline\n"
        "ner = pipeline('token-classification', model=sys.argv[1], aggregation_strategy='simple')\n"
        "out = ner('Patients with myocardial infarction were treated .')\n"
        "assert not any(m.startswith('nerlab') for m in sys.modules)\n"
        "print(json.dumps([{k: str(v) for k, v in e.items()} for e in out]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "hf")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    entities = json.loads(r.stdout.strip().splitlines()[-1])
    assert entities and all(e["entity_group"] == "Disease" for e in entities)


def untrained(kind: str, tmp_path, synthetic_home, monkeypatch):
    """A saved model with a random `kind` head: enough to test the format conversion."""
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    text = (
        "target: ncbi_disease\nmodel: tiny\ndata: synthetic\nbudget: {steps: 1}\nmax_length: 32\n"
        f"curriculum: [{{corpora: [ncbi_disease], fraction: 1.0}}]\nhead: {{kind: {kind}}}\n"
    )
    cfg = parse_config_text(text)
    tokenizer = tiny_tokenizer(tokenizer_texts(cfg), synthetic_home / "models")
    model = Tagger(tiny_encoder(tokenizer, 0), [VIEW], kind, 0.1)
    save_tagger(tmp_path / kind, model, tokenizer, text, VIEW, {"seed": 0, "eval_f1": 0.0})
    return tmp_path / kind


def test_crf_exports_its_emissions(tmp_path, synthetic_home, monkeypatch):
    saved_dir = untrained("crf", tmp_path, synthetic_home, monkeypatch)
    export(saved_dir, tmp_path / "hf")
    saved = load_tagger(saved_dir, torch.device("cpu"))
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    enc = saved.tokenizer(["Patients with breast cancer ."], return_tensors="pt")
    with torch.no_grad():
        states = saved.model.states(enc)
        emissions = saved.model.heads["ncbi_disease:Disease"].emissions(states)
        logits = model(**enc).logits
    torch.testing.assert_close(logits, emissions, atol=1e-4, rtol=1e-4)


def test_mlp_head_is_refused(tmp_path, synthetic_home, monkeypatch):
    saved_dir = untrained("mlp", tmp_path, synthetic_home, monkeypatch)
    with pytest.raises(UserError, match="mlp head has no equivalent in ModernBertForToken"):
        export(saved_dir, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_an_mlp_best_is_refused_before_any_training(tmp_path, synthetic_home, monkeypatch):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    repo = make_repo(tmp_path / "proj", fake_train=False)
    branch = RunBranch(repo, "t")
    branch.checkout()
    path = repo / "configs" / "current.yaml"
    text = yaml.safe_dump({**FINAL_BASE, "head": {"kind": "mlp"}})
    commit = branch.experiment_commit(1, path, text, "baseline", branch.tip().hexsha, "baseline")
    branch.land(1, commit, path, text, "baseline", "baseline")
    row = {"commit": commit, "target": "ncbi_disease", "dev_f1": "0.5", "status": "keep"}
    append_row(repo / "results.tsv", {**row, "description": "baseline", "tag": "t", "n": 1})
    git.Repo(repo).git.checkout("main")
    r = run_script(str(ROOT / "final.py"), "--tag", "t", "--seeds", "1", "--export",
                   str(tmp_path / "hf"), home=synthetic_home, cwd=repo)  # fmt: skip
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stdout + r.stderr
    assert re.match(r"error: .*mlp head.*predict.py --model runs/t/final/", r.stderr)
    assert "head.kind: linear" in r.stderr  # what the user can do instead
    assert not (repo / "runs" / "t" / "final").exists()  # no seed started
    assert not (tmp_path / "hf").exists()


def test_existing_export_directory_is_refused_without_force(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="already exists; choose another directory or add --force"):
        check_target_dir(tmp_path / "out", force=False)
    check_target_dir(tmp_path / "out", force=True)
    check_target_dir(tmp_path / "new", force=False)


REPORT = {"tag": "t", "seeds": [0], "hardware": "CPU", "best_is_baseline": True,
          "baseline": {"n": 1, "commit": "abc1234", "description": "baseline", "seeds": []},
          "difference": None}  # fmt: skip


def test_export_is_readable_and_force_replaces_the_directory(
    trained_model, synthetic_home, tmp_path, monkeypatch
):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    out = tmp_path / "models" / "hf"
    out.mkdir(parents=True)
    (out / "stale.bin").write_text("from an older export")
    umask = os.umask(0o077)  # a private umask: the export is still readable by others
    try:
        export_model(trained_model[0], out, REPORT)
    finally:
        os.umask(umask)
    assert not (out / "stale.bin").exists() and (out / "README.md").is_file()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert modes["hf"] == 0o755 and modes["model.safetensors"] == 0o644
    assert set(modes.values()) == {0o755, 0o644}
    assert [p.name for p in out.parent.iterdir()] == ["hf"]  # nothing left beside it


def test_a_failed_export_leaves_the_old_directory_whole(
    trained_model, synthetic_home, tmp_path, monkeypatch
):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    out = tmp_path / "hf"
    out.mkdir()
    (out / "README.md").write_text("the previous export")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_module, "model_card", disk_full)
    with pytest.raises(OSError):
        export_model(trained_model[0], out, REPORT)
    assert [p.name for p in out.iterdir()] == ["README.md"]
    assert (out / "README.md").read_text() == "the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no partial directory


def test_not_a_saved_model_is_a_clear_error(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(UserError, match="not a model saved by this project"):
        load_tagger(tmp_path / "m", torch.device("cpu"))
