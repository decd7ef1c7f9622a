"""prepare_data.py end to end, and the store and source helpers behind it."""

import errno
import json
import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nerlab.conll import Sentence
from nerlab.errors import UserError
from nerlab.prepare import load_local, parse_names
from nerlab.store import Store, data_root, split_stats
from nerlab.synthetic import generate
from tests.helpers import run_script

# The table of ../shared/data/README.md: (sentences, tokens, mentions) per corpus and split.
README_COUNTS = {
    ("bc5cdr", "train"): (4560, 118170, {"Chemical": 5203, "Disease": 4182}),
    ("bc5cdr", "dev"): (4581, 117453, {"Chemical": 5347, "Disease": 4246}),
    ("bc5cdr", "test"): (4797, 124750, {"Chemical": 5385, "Disease": 4424}),
    ("ncbi_disease", "train"): (5424, 135701, {"Disease": 5134}),
    ("ncbi_disease", "dev"): (923, 23969, {"Disease": 787}),
    ("ncbi_disease", "test"): (940, 24497, {"Disease": 960}),
    ("bc2gm", "train"): (12574, 355405, {"Gene": 15197}),
    ("bc2gm", "dev"): (2519, 71042, {"Gene": 3061}),
    ("bc2gm", "test"): (5038, 143465, {"Gene": 6325}),
    ("jnlpba", "dev"): (
        1739,
        47461,
        {"DNA": 1052, "RNA": 107, "cell_line": 400, "cell_type": 526, "protein": 2466},
    ),
    ("jnlpba", "test"): (
        3856,
        101039,
        {"DNA": 1056, "RNA": 118, "cell_line": 500, "cell_type": 1921, "protein": 5067},
    ),
    ("linnaeus", "train"): (11935, 280960, {"Species": 2119}),
    ("linnaeus", "dev"): (4078, 93815, {"Species": 711}),
    ("linnaeus", "test"): (7142, 164653, {"Species": 1433}),
}


def _table_rows(stdout: str) -> dict[tuple[str, str], str]:
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"\| (\w+)\s+\| (\w+)\s+\|(.*)", line)
        if m and m.group(1) != "dataset":
            rows[(m.group(1), m.group(2))] = m.group(3)
    return rows


def test_synthetic_is_deterministic_and_has_each_corpus_types():
    a, b = generate("jnlpba", seed=0), generate("jnlpba", seed=0)
    assert a == b and generate("jnlpba", seed=1) != a
    assert set(a) == {"train", "dev", "test"} and len(a["train"]) >= 1000
    assert set(split_stats(a["train"]).mentions) == {
        "DNA",
        "RNA",
        "protein",
        "cell_type",
        "cell_line",
    }


def test_prepare_synthetic_script_then_noop(ner_home):
    r = run_script("prepare_data.py", "--synthetic", home=ner_home)
    assert r.returncode == 0, r.stderr
    rows = _table_rows(r.stdout)
    assert len(rows) == 15 and "Chemical=" in rows[("bc5cdr", "train")]
    manifest = json.loads((ner_home / "synthetic" / "manifest.json").read_text())
    assert manifest["ncbi_disease"]["splits"]["train"]["sentences"] == 2000
    r2 = run_script("prepare_data.py", "--synthetic", "--corpora", "bc2gm", home=ner_home)
    assert r2.returncode == 0 and "bc2gm: up to date" in r2.stdout + r2.stderr
    r3 = run_script(
        "prepare_data.py", "--synthetic", "--corpora", "bc2gm", "--force", home=ner_home
    )
    assert "bc2gm: prepared" in r3.stdout + r3.stderr


def test_prepare_shared_data_matches_the_readme_table(ner_home, shared_data):
    r = run_script("prepare_data.py", "--source", str(shared_data), home=ner_home)
    assert r.returncode == 0, r.stderr
    rows = _table_rows(r.stdout)
    for (name, split), (sents, tokens, mentions) in README_COUNTS.items():
        ents = ", ".join(f"{t}={n}" for t, n in sorted(mentions.items()))
        cells = [c.strip() for c in rows[(name, split)].split("|")]
        assert cells[:3] == [str(sents), str(tokens), ents], (name, split)
    assert "missing" in rows[("jnlpba", "train")]
    assert "jnlpba: train split absent (looked for" in r.stdout + r.stderr
    # using jnlpba's absent train split is an error naming the corpus and the file
    with pytest.raises(UserError, match=r"'jnlpba' has no train split.*jnlpba/train\.conll"):
        Store(data_root()).read("jnlpba", "train")


def _local(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_local_iob1_and_custom_corpus(tmp_path, ner_home):
    src = _local(
        tmp_path / "src",
        {
            "mydrugs/train.conll": "a\tI-Drug\nb\tI-Drug\n\nc\tO\n",
            "mydrugs/dev.conll": "d\tB-Drug\n",
        },
    )
    r = run_script("prepare_data.py", "--source", str(src), home=ner_home)
    assert r.returncode == 0, r.stderr
    assert "converted 1 IOB1 tags to IOB2" in r.stdout + r.stderr
    assert "mydrugs: test split absent" in r.stdout + r.stderr
    store = Store(data_root())
    assert store.read("mydrugs", "train")[0] == Sentence(["a", "b"], ["B-Drug", "I-Drug"])
    assert store.view("mydrugs").types == ("Drug",)


def test_malformed_file_is_one_line_error(tmp_path, ner_home):
    src = _local(tmp_path / "src", {"ncbi_disease/train.conll": "a\tO\nb c d\tB-Disease\nbad\n"})
    r = run_script("prepare_data.py", "--source", str(src), home=ner_home)
    assert r.returncode == 1
    path = src / "ncbi_disease" / "train.conll"
    assert r.stderr.strip() == (f"error: {path}:3: one column, expected TOKEN<TAB>TAG: 'bad'")


def test_wrong_types_for_a_registry_corpus(tmp_path):
    src = _local(tmp_path / "src", {"ncbi_disease/train.conll": "a\tB-Gene\n"})
    with pytest.raises(UserError, match="entity types \\['Gene'\\] are not ncbi_disease's"):
        load_local(src, "ncbi_disease")


def test_bad_arguments(tmp_path, ner_home):
    r = run_script("prepare_data.py", "--source", str(tmp_path / "nope"), home=ner_home)
    assert r.returncode == 1 and "directory not found" in r.stderr
    r = run_script("prepare_data.py", "--synthetic", "--corpora", "pubmed", home=ner_home)
    assert r.returncode == 1 and "unknown corpus 'pubmed'; valid names: bc5cdr" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_script("prepare_data.py", "--source", str(tmp_path / "empty"), home=ner_home)
    assert r.returncode == 1 and "no corpora found" in r.stderr
    with pytest.raises(UserError):
        parse_names("a,b", ["a"])


def test_empty_split_file_is_an_error(tmp_path):
    src = _local(tmp_path / "src", {"linnaeus/train.conll": "\n\n"})
    with pytest.raises(UserError, match="train.conll: empty file"):
        load_local(src, "linnaeus")


def test_reading_an_unprepared_corpus_says_how_to_prepare_it(ner_home):
    with pytest.raises(UserError, match="python prepare_data.py --corpora bc2gm --synthetic"):
        Store(data_root("synthetic")).read("bc2gm", "train")


def test_require_names_every_unprepared_corpus_and_one_command(ner_home):
    store = Store(data_root("synthetic"))
    store.write("linnaeus", generate("linnaeus"), {"source": "synthetic", "source_id": "s"})
    store.require(["linnaeus"])
    with pytest.raises(UserError) as e:
        store.require(["bc2gm", "linnaeus", "ncbi_disease"])
    assert str(e.value) == (
        f"corpora 'bc2gm', 'ncbi_disease' are not prepared in {store.root}; "
        "run: python prepare_data.py --corpora bc2gm,ncbi_disease --synthetic"
    )
    with pytest.raises(UserError, match=r"^corpus 'bc2gm' is not prepared in .*/data; run: "):
        Store(data_root("prepared")).require(["bc2gm"])


def test_a_split_file_deleted_after_preparing_says_how_to_rebuild_it(ner_home):
    store = Store(data_root("synthetic"))
    store.write("linnaeus", generate("linnaeus"), {"source": "synthetic", "source_id": "s"})
    (store.root / "linnaeus" / "train.parquet").unlink()
    with pytest.raises(UserError) as e:
        store.read("linnaeus", "train")
    assert str(e.value) == (
        f"corpus 'linnaeus': {store.root / 'linnaeus' / 'train.parquet'} is missing (deleted "
        "since it was prepared?); run: python prepare_data.py --corpora linnaeus --synthetic "
        "--force"
    )


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_full_disk_changes_nothing_and_is_one_line(ner_home, monkeypatch):
    store = Store(data_root("synthetic"))
    store.write("ncbi_disease", generate("ncbi_disease", 0), {"source": "synthetic (seed 0)"})
    before = _files(store.root)
    write_table = pq.write_table
    calls = []

    def fills_the_disk(table, where, **kwargs):  # the second split: half written, then ENOSPC
        calls.append(where)
        write_table(table.slice(0, len(table) // (2 if len(calls) == 2 else 1)), where, **kwargs)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("nerlab.store.pq.write_table", fills_the_disk)
    with pytest.raises(UserError, match="No space left on device") as e:
        store.write("ncbi_disease", generate("ncbi_disease", 1), {"source": "synthetic (seed 1)"})
    assert "\n" not in str(e.value) and "ncbi_disease" in str(e.value)
    assert _files(store.root) == before  # the old corpus whole, no partial file


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs: too small for the synthetic corpora (needs root; skipped without)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                       capture_output=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_prepare_synthetic_on_a_full_disk(tiny_disk):
    r = run_script("prepare_data.py", "--synthetic", home=tiny_disk)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    store = Store(tiny_disk / "synthetic")
    for name, entry in store.manifest().items():  # what was prepared is whole
        for split in entry["splits"]:
            assert len(store.read(name, split)) == entry["splits"][split]["sentences"]
    assert not [p for p in tiny_disk.rglob("*") if p.name.endswith(".tmp")]
