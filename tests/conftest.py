"""Shared fixtures: every test gets its own $NER_AR_HOME; real corpora are used when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ROOT, run_script

SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def ner_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "ner_home"
    monkeypatch.setenv("NER_AR_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def synthetic_home(tmp_path_factory) -> Path:
    """A home with the synthetic corpora prepared once for the whole session."""
    home = tmp_path_factory.mktemp("synthetic_home")
    from nerlab import prepare
    from nerlab.corpora import CORPORA
    from nerlab.store import Store

    store = Store(home / "synthetic")
    for name in CORPORA:
        loaded = prepare.load_synthetic(name, seed=0)
        store.write(name, loaded.splits, {"source": loaded.source, "source_id": loaded.source_id})
    return home


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "ncbi_disease" / "train.conll").is_file():
        pytest.skip(f"real corpora not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained_model(synthetic_home, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny linear-head model trained once by `train.py --save-model` on the synthetic
    corpora: (its directory, train.py's dev predictions file)."""
    out = tmp_path_factory.mktemp("trained")
    model, pred = out / "model", out / "pred.txt"
    r = run_script(
        "train.py", "--config", "configs/smoke.yaml", "--set", "budget.steps=40",
        "--set", "optim.lr=0.005", "--save-model", str(model), "--predictions", str(pred),
        home=synthetic_home,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return model, pred
