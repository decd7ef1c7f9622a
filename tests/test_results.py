import multiprocessing

import pytest

from nerlab.errors import UserError
from nerlab.results import COLUMNS, append_row, append_tsv, read_results, read_tsv
from nerlab.summary import KEYS, format_summary, parse_summary


def row(i: int, **kw) -> dict:
    return {"commit": f"c{i}", "target": "ncbi_disease", "dev_f1": f"0.{i}", "dev_f1_std": "0",
            "repeats": 1, "memory_gb": "1.0", "train_s": "300", "status": "keep",
            "description": f"run {i}", **kw}  # fmt: skip


def test_header_once_and_descriptions_sanitised(tmp_path):
    path = tmp_path / "results.tsv"
    append_row(path, row(1, description="tab\there\nnewline"))
    append_row(path, row(2))
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == COLUMNS and len(lines) == 3
    df = read_results(path)
    assert df["description"].tolist() == ["tab here newline", "run 2"]
    assert df["dev_f1"].tolist() == [0.1, 0.2]


def test_rejects_unknown_status_and_columns(tmp_path):
    with pytest.raises(ValueError, match="status must be one of"):
        append_row(tmp_path / "r.tsv", row(1, status="great"))
    with pytest.raises(ValueError, match="unknown results columns"):
        append_row(tmp_path / "r.tsv", {**row(1), "lr": 1})


def test_partial_last_line_is_set_aside_not_lost(tmp_path):
    path = tmp_path / "results.tsv"
    append_row(path, row(1))
    with open(path, "a") as f:
        f.write("2026-01-01T00:00:00\tc2\tncbi")  # a writer killed mid-row
    with pytest.raises(UserError, match=r"results.tsv:3: last line is incomplete"):
        read_results(path)
    append_row(path, row(3))
    assert read_results(path)["commit"].tolist() == ["c1", "c3"]
    assert (tmp_path / "results.tsv.partial").read_text() == "2026-01-01T00:00:00\tc2\tncbi\n"


def test_missing_or_headerless_file(tmp_path):
    with pytest.raises(UserError, match="results file not found"):
        read_results(tmp_path / "none.tsv")
    (tmp_path / "bad.tsv").write_text("a\tb\n")
    with pytest.raises(UserError, match="bad.tsv:1: expected the header"):
        read_results(tmp_path / "bad.tsv")


def test_binary_bytes_are_an_error_naming_the_line_and_the_file_is_not_rewritten(tmp_path):
    path = tmp_path / "results.tsv"
    append_row(path, row(1))
    append_row(path, row(2))
    with open(path, "ab") as f:
        f.write(b"\x00\xff\xfe\x81garbage\n\x93\n")  # e.g. a disk error or a stray `cat`
    before = path.read_bytes()
    with pytest.raises(UserError) as e:
        read_results(path)
    assert str(e.value) == (
        f"{path}:4: not valid UTF-8 (byte 0xff at column 2); fix or delete that line "
        "(the rows before it are intact)"
    )
    assert path.read_bytes() == before


def test_unknown_status_is_an_error_naming_the_line_and_the_allowed_ones(tmp_path):
    path = tmp_path / "results.tsv"
    append_row(path, row(1))
    with open(path, "a") as f:
        f.write("\t".join(append_row(tmp_path / "other.tsv", row(2)).values()).replace(
            "keep", "great") + "\n")  # fmt: skip
    with pytest.raises(UserError) as e:
        read_results(path)
    assert str(e.value) == f"{path}:3: status 'great' is not one of ok, keep, discard, crash"


def test_cells_are_read_as_written_quotes_included(tmp_path):
    """A description may start with a quote (an agent's `"lr" up`): not CSV quoting."""
    path = tmp_path / "results.tsv"
    for i, text in enumerate(['"lr" up', '"unclosed', "plain", "NA", ""]):
        append_row(path, row(i, description=text))
    df = read_results(path)
    assert df["description"].tolist() == ['"lr" up', '"unclosed', "plain", "NA", ""]


def test_generic_tsv_log(tmp_path):
    """append_tsv/read_tsv on other columns (no timestamp): conversions, and the checks."""
    path, cols = tmp_path / "log.tsv", ["name", "k", "x", "status"]
    append_tsv(path, cols, ("ok",), {"name": "a", "k": 3, "x": "0.5", "status": "ok"}, kind="log")
    append_tsv(path, cols, ("ok",), {"name": "b", "status": "ok"}, kind="log")
    assert path.read_text().splitlines()[0] == "name\tk\tx\tstatus"
    df = read_tsv(path, cols, numeric=("x",), integers={"k": -1})
    assert df["k"].tolist() == [3, -1] and df["x"].iloc[0] == 0.5 and df["x"].isna().iloc[1]
    with pytest.raises(ValueError, match="unknown log columns"):
        append_tsv(path, cols, ("ok",), {"y": 1, "status": "ok"}, kind="log")
    with pytest.raises(UserError, match="log.tsv:1: expected the log header name k x y status"):
        read_tsv(path, ["name", "k", "x", "y", "status"], header="log header")
    with open(path, "a") as f:
        f.write("c\t1")  # a writer killed mid-row: without `partial`, checked as any line
    with pytest.raises(UserError, match="log.tsv:4: expected 4 tab-separated columns, found 2"):
        read_tsv(path, cols)
    append_tsv(path, cols, ("ok",), {"name": "d", "status": "ok"}, kind="log")
    assert read_tsv(path, cols)["name"].tolist() == ["a", "b", "d"]
    assert (tmp_path / "log.tsv.partial").read_text() == "c\t1\n"


def _append_many(args):
    path, start = args
    for i in range(start, start + 25):
        append_row(path, row(i))


def test_concurrent_appends_lose_nothing(tmp_path):
    path = tmp_path / "results.tsv"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_append_many, [(path, k * 100) for k in range(4)])
    df = read_results(path)
    assert len(df) == 100 and df["commit"].nunique() == 100


def test_summary_roundtrip():
    text = "noise\n---\nnot: this\n" + format_summary(
        {"dev_f1": 0.5, "status": "crash", "steps": 3, "reason": "loss is nan at step 3"}
    )
    parsed = parse_summary(text)
    assert set(KEYS) <= set(parsed) and parsed["dev_f1"] == "0.500000"
    assert parsed["status"] == "crash" and parsed["reason"] == "loss is nan at step 3"
    assert parse_summary("no block here") is None


OLD_LAYOUT = (
    "timestamp\tcommit\ttarget\tdev_f1\tdev_f1_std\trepeats\tmemory_gb\ttrain_s\tstatus\t"
    "description\n"
    "2026-11-28T01:00:00\tabc1234\tncbi_disease\t0.500000\t0.000000\t1\t0.10\t1.0\tkeep\t"
    "baseline [keep: first result (0.5000)]\n"
    "2026-11-28T01:10:00\tdef5678\tncbi_disease\t0.000000\t0.000000\t1\t0.10\t1.0\tcrash\t"
    "lr 5.0 [crash: loss is nan at step 3]\n"
    "2026-11-28T01:20:00\t0123abc\tncbi_disease\t0.700000\t0.000000\t1\t0.10\t1.0\tok\t"
    "hand run\n"
)


def test_an_old_layout_file_is_read_then_migrated_once_with_a_backup(tmp_path, capsys):
    path = tmp_path / "results.tsv"
    path.write_text(OLD_LAYOUT)
    df = read_results(path)  # read as it is, unchanged
    assert list(df.columns) == COLUMNS and path.read_text() == OLD_LAYOUT
    assert df["description"].tolist() == ["baseline", "lr 5.0", "hand run"]
    assert df["reason"].tolist() == ["first result (0.5000)", "loss is nan at step 3", ""]
    assert df["role"].tolist() == ["baseline", "experiment", ""]
    append_row(path, row(4, tag="t", n=4, role="experiment", reason="+0.1 over best"))
    assert "migrated 3 rows" in capsys.readouterr().out
    assert (tmp_path / "results.tsv.v1.bak").read_text() == OLD_LAYOUT
    after = read_results(path)
    assert after["commit"].tolist() == ["abc1234", "def5678", "0123abc", "c4"]
    assert after.iloc[:3].drop(columns="n").equals(df.drop(columns="n"))
    assert after["n"].tolist() == [0, 0, 0, 4] and after["reason"].iloc[3] == "+0.1 over best"
    append_row(path, row(5))  # no second migration
    assert "migrated" not in capsys.readouterr().out
