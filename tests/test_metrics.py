import pytest
import yaml

from nerlab.conll import Sentence
from nerlab.metrics import read_predictions, score, write_predictions


def test_strict_entity_scores():
    gold = [["B-X", "I-X", "O", "B-Y"], ["B-X", "O"]]
    pred = [["B-X", "I-X", "O", "O"], ["B-X", "O"]]  # 2 of 3 gold found, no false positive
    s = score(gold, pred)
    assert s.precision == 1 and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(0.8) and s.per_type == {"X": 1.0, "Y": 0.0}
    # a boundary error is a miss and a false positive: strict, as conlleval counts
    b = score([["B-X", "I-X"]], [["B-X", "O"]])
    assert b.f1 == 0 and b.precision == 0


def test_scores_are_plain_floats_that_any_writer_takes():
    """seqeval gives numpy floats; the model card's YAML front matter cannot represent them."""
    s = score([["B-X", "I-X", "O"]], [["B-X", "I-X", "B-X"]])
    values = [s.f1, s.precision, s.recall, *s.per_type.values()]
    assert all(type(v) is float for v in values)
    assert yaml.safe_load(yaml.safe_dump(values)) == values


def test_predictions_file_roundtrip(tmp_path):
    sents = [Sentence(["a", "b"], ["B-X", "I-X"]), Sentence(["c"], ["O"])]
    pred = [["B-X", "O"], ["B-X"]]
    write_predictions(tmp_path / "p.txt", sents, pred)
    assert (tmp_path / "p.txt").read_text() == "a B-X B-X\nb I-X O\n\nc O B-X\n\n"
    assert read_predictions(tmp_path / "p.txt") == ([s.tags for s in sents], pred)
