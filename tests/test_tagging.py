"""predict.py and nerlab.tagging: text -> JSONL spans, CoNLL -> CoNLL, windowing, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from nerlab import tagging
from nerlab.errors import UserError
from nerlab.modelio import load_tagger
from nerlab.tagging import entities, read_text, tag_text, text_units
from tests.helpers import run_script


def test_entities_from_iob2():
    tags = ["O", "B-Disease", "I-Disease", "O", "I-Gene", "I-Gene", "B-Gene", "B-Gene"]
    assert entities(tags) == [(1, 3, "Disease"), (4, 6, "Gene"), (6, 7, "Gene"), (7, 8, "Gene")]


def test_text_words_keep_character_offsets():
    line = "BRCA1-associated breast cancer (BC) is common. Mutations vary!"
    (unit,) = text_units(line, split_sentences=False)
    assert unit.words[:4] == ["BRCA1", "-", "associated", "breast"]
    assert all(line[a:b] == w for w, (a, b) in zip(unit.words, unit.spans))
    two = text_units(line, split_sentences=True)
    assert [u.words[0] for u in two] == ["BRCA1", "Mutations"]
    assert two[1].spans[0][0] == line.index("Mutations")  # offsets stay within the line


def test_predict_text_and_conll(trained_model, synthetic_home, tmp_path):
    model_dir, pred_file = trained_model
    long = " ".join(["myocardial infarction and"] * 60)  # 180 words: several windows of 64
    text = tmp_path / "in.txt"
    text.write_text(f"Patients with myocardial infarction were treated .\n\n{long}\n")
    out = tmp_path / "out.jsonl"
    r = run_script(
        "predict.py", "--model", str(model_dir), str(text), "--out", str(out), home=synthetic_home
    )
    assert r.returncode == 0, r.stderr[-2000:]
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["line"] for x in records] == [1, 3]
    for x in records:
        for e in x["entities"]:
            assert x["text"][e["start"] : e["end"]] == e["text"] and e["type"] == "Disease"
    assert len(records[1]["entities"]) >= 30  # the windows past the first are tagged too

    conll = tmp_path / "dev.conll"  # train.py's predictions file as input: token gold pred
    conll.write_text(pred_file.read_text())
    r = run_script(
        "predict.py",
        "--model",
        str(model_dir),
        str(conll),
        "--out",
        str(tmp_path / "out.conll"),
        home=synthetic_home,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines_in = conll.read_text().splitlines()
    lines_out = (tmp_path / "out.conll").read_text().splitlines()
    assert len(lines_out) == len(lines_in)
    for a, b in zip(lines_in, lines_out):
        if a:  # the model, reloaded, predicts what train.py predicted (its 3rd column)
            assert b.startswith(a + "\t") and b.split("\t")[-1] == a.split()[2]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"\n  \n", "empty file"),
        (b"PK\x03\x04\x00\x00", "binary file"),
        (b"caf\xe9 au lait", "not UTF-8 text"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, content, message):
    path = tmp_path / "in.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_text(path)
    r = run_script("predict.py", str(path), "--model", str(tmp_path / "none"), home=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and message in r.stderr
    assert "no such model" not in r.stderr  # said before any model is looked for


def test_missing_model_is_a_one_line_error(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("Some text .\n")
    r = run_script("predict.py", str(path), "--model", str(tmp_path / "none"), home=tmp_path)
    assert (
        r.returncode == 1 and r.stderr == f"error: {tmp_path / 'none'}: no such model directory\n"
    )


def test_out_in_a_missing_directory_is_created(trained_model, synthetic_home, tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("Patients with myocardial infarction were treated .\n")
    out = tmp_path / "new" / "dir" / "out.jsonl"
    r = run_script("predict.py", "--model", str(trained_model[0]), str(text), "--out", str(out),
                   home=synthetic_home)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(out.read_text())["line"] == 1


@pytest.mark.parametrize("damaged", ["model.safetensors", "nerlab_head.safetensors",
                                     "tokenizer.json", "nerlab.json"])  # fmt: skip
def test_a_damaged_model_file_is_a_one_line_error_naming_it(trained_model, tmp_path, damaged):
    model = tmp_path / "model"
    shutil.copytree(trained_model[0], model)
    data = (model / damaged).read_bytes()
    (model / damaged).write_bytes(data[: len(data) // 2])  # a full disk or a kill mid-save
    text = tmp_path / "in.txt"
    text.write_text("Some text .\n")
    r = run_script("predict.py", "--model", str(model), str(text), home=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("error: ") and r.stderr.count("error") == 1
    assert damaged.split(".")[0] in last, r.stderr


def test_the_output_is_tagged_as_it_goes(trained_model, tmp_path, monkeypatch):
    """tag_text yields each chunk's lines (but the one whose end is not known yet) before the
    next chunk is tagged; predict.py writes each line as it comes (line-buffered), so a long
    file's output grows as it is tagged."""
    text = "".join(f"Patients {i} with myocardial infarction .\n" for i in range(7))
    out: list[str] = []
    seen = []

    def spy(*args, **kwargs):
        seen.append(len(out))
        return predict_chunk(*args, **kwargs)

    predict_chunk = tagging.predict
    monkeypatch.setattr(tagging, "CHUNK", 2)
    monkeypatch.setattr(tagging, "predict", spy)
    device = torch.device("cpu")
    for line in tag_text(load_tagger(trained_model[0], device), text, device, False):
        out.append(line)
    assert len(seen) == 4 and all(b > a for a, b in zip(seen, seen[1:]))
    assert len(out) == 7
