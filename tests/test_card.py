"""The model card says only what is true of the exported model: its base (a hub id or a local
model), its family, where its data came from (no machine paths), and the exported seed's own
test scores; synthetic data claims no real benchmark."""

from __future__ import annotations

import yaml

from nerlab.card import model_card
from nerlab.config import ExperimentConfig
from tests.helpers import FINAL_BASE

META = {"target": "ncbi_disease", "corpus": "ncbi_disease", "types": ["Disease"],
        "labels": ["O", "B-Disease", "I-Disease"], "seed": 1, "eval_f1": 0.81,
        "head": "linear"}  # fmt: skip
SPLITS = {s: {"sentences": n, "mentions": {"Disease": n}} for s, n in [("train", 50), ("test", 9)]}
HUB = {"ncbi_disease": {"source": "hub:ncbi/ncbi_disease", "splits": SPLITS}}
LOCAL = {"ncbi_disease": {"source": "local:/home/alice/data/ncbi_disease", "splits": SPLITS}}
SYNTHETIC = {"ncbi_disease": {"source": "synthetic (seed 0)", "splits": SPLITS}}
ENV = {"torch_version": "2.9.1", "transformers_version": "4.57.0", "python_version": "3.11.7"}


def seed(s: int, dev: float, test: float) -> dict:
    scores = {"precision": test + 0.01, "recall": test - 0.01, "per_type": {"Disease": test}}
    return {"seed": s, "status": "ok", "dev": {**scores, "f1": dev}, "test": {**scores, "f1": test}}


def report(seeds: list[dict]) -> dict:
    tests = [s["test"]["f1"] for s in seeds]
    arm = {"n": 1, "commit": "abc1234", "description": "baseline", "seeds": seeds,
           "dev": {"f1": 0.8, "f1_std": 0.01},
           "test": {"f1": sum(tests) / len(tests), "f1_std": 0.01, "precision": 0.7,
                    "recall": 0.7, "per_type": {"Disease": 0.7}}}  # fmt: skip
    return {"tag": "night", "seeds": [s["seed"] for s in seeds], "hardware": "CPU",
            "best_is_baseline": True, "baseline": arm, "difference": None}  # fmt: skip


def card(model: str, manifest: dict, data: str = "prepared", **kw) -> tuple[dict, str]:
    cfg = ExperimentConfig.model_validate({**FINAL_BASE, "model": model, "data": data})
    rep = report([seed(0, 0.79, 0.70), seed(1, 0.81, 0.6931), seed(2, 0.80, 0.66)])
    text = model_card(rep, META, cfg, manifest, "out", **kw)
    return yaml.safe_load(text.split("---\n")[1]), text


def test_a_local_bert_model_on_local_data_claims_no_hub_base_or_dataset(tmp_path):
    model = tmp_path / "minilm"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    front, text = card(str(model), LOCAL, model_type="bert")
    assert "base_model" not in front and "datasets" not in front
    assert "bert" in front["tags"] and "modernbert" not in front["tags"]
    assert str(tmp_path) not in text and "/home/alice" not in text  # no machine paths
    assert "ncbi/ncbi_disease" not in text
    assert "local model" in text and "local CoNLL files" in text
    dataset = front["model-index"][0]["results"][0]["dataset"]
    assert dataset["type"] == "ncbi_disease" and "local CoNLL" in dataset["name"]


def test_the_model_index_holds_the_exported_seeds_test_scores():
    front, text = card("answerdotai/ModernBERT-base", HUB, model_type="modernbert")
    assert front["base_model"] == "answerdotai/ModernBERT-base"
    assert front["datasets"] == ["ncbi/ncbi_disease"] and "modernbert" in front["tags"]
    metrics = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"f1": 0.6931, "precision": 0.7031, "recall": 0.6831}  # seed 1's
    assert "69.31" in text and "68.44 ± 1.00" in text  # the seed's F1, and the seeds' mean


def test_synthetic_data_claims_no_real_benchmark():
    front, text = card("tiny", SYNTHETIC, data="synthetic", model_type="modernbert")
    assert "model-index" not in front and "datasets" not in front
    assert "ncbi/ncbi_disease" not in text
    data = text.split("## Data")[1].split("##")[0]
    assert "synthetic" in data and "train 50 sentences" in data
    assert "PubMed" not in data  # not the real corpus's description


def test_license_other_comes_with_a_name_and_the_environment_is_listed():
    front, text = card("tiny", SYNTHETIC, data="synthetic", environment=ENV)
    assert front["license"] == "other" and front["license_name"]
    assert "torch 2.9.1" in text and "transformers 4.57.0" in text and "Python 3.11.7" in text
    front, _ = card("tiny", SYNTHETIC, data="synthetic", license_id="mit")
    assert front["license"] == "mit" and "license_name" not in front
