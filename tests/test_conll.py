from pathlib import Path

import pytest

from nerlab.conll import Sentence, read_conll, restrict_tags, to_iob2, write_conll
from nerlab.errors import UserError


def write(tmp_path: Path, text: str, newline: str = "\n") -> Path:
    path = tmp_path / "x.conll"
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def test_tab_and_space_columns_docstart_crlf_and_blank_runs(tmp_path):
    text = "-DOCSTART- O\n\n\nAspirin\tNN\tB-Chemical\ncauses O\n\n\n\nrash\tB-Disease\n"
    sents, converted = read_conll(write(tmp_path, text, newline="\r\n"))
    assert [s.tokens for s in sents] == [["Aspirin", "causes"], ["rash"]]
    assert [s.tags for s in sents] == [["B-Chemical", "O"], ["B-Disease"]]
    assert converted == 0


def test_iob1_is_converted_and_counted(tmp_path):
    sents, converted = read_conll(write(tmp_path, "a\tI-X\nb\tI-X\nc\tO\nd\tI-X\ne\tI-Y\n"))
    assert sents[0].tags == ["B-X", "I-X", "O", "B-X", "B-Y"]
    assert converted == 3


def test_to_iob2_keeps_valid_iob2():
    tags = ["B-X", "I-X", "B-X", "O", "B-Y", "I-Y"]
    assert to_iob2(tags) == (tags, 0)


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("a\tO\nlonely\n", 2, "one column"),
        ("a\tO\n\tB-X\n", 2, "empty token"),
        ("a\tO\nb\tB_X\n", 2, "is not O, B-<type> or I-<type>"),
        ("a\tO\n\nb\tX-Chem\n", 3, "is not O"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, text, line, reason):
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=reason) as e:
        read_conll(path)
    assert str(e.value).startswith(f"{path}:{line}: ")


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(UserError, match="empty file"):
        read_conll(write(tmp_path, "\n\n-DOCSTART- O\n\n"))
    with pytest.raises(UserError, match="file not found"):
        read_conll(tmp_path / "nope.conll")


def test_restrict_tags():
    tags = ["B-Chemical", "I-Chemical", "O", "B-Disease"]
    assert restrict_tags(tags, frozenset({"Disease"})) == ["O", "O", "O", "B-Disease"]


def test_write_then_read_roundtrip(tmp_path):
    sents = [Sentence(["a", "b"], ["B-X", "I-X"]), Sentence(["c"], ["O"])]
    write_conll(tmp_path / "r.conll", sents)
    assert read_conll(tmp_path / "r.conll")[0] == sents
