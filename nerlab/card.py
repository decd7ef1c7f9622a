"""The model card (README.md in the Hugging Face format) of an exported model: YAML front
matter (base model, language, license, tags, datasets, model-index with the test F1) and a body
that says what was trained, on what, how well against the baseline, and how to reproduce it."""

from __future__ import annotations

from pathlib import Path

import yaml
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from nerlab.config import ExperimentConfig
from nerlab.corpora import ALIASES, CORPORA
from nerlab.environment import describe
from nerlab.final import TEST_NOTE, fmt_diff, fmt_points
from nerlab.head_kinds import HEAD_KINDS
from nerlab.model import TINY, TINY_SHAPE
from nerlab.text import markdown as md

LICENSE_NAME = "unspecified"  # the hub asks for a name with `license: other`


def model_card(
    report: dict,
    meta: dict,
    cfg: ExperimentConfig,
    manifest: dict,
    export_dir: str,
    license_id: str = "other",
    model_type: str = "",
    environment: dict | None = None,
) -> str:
    """README.md text for the exported best-dev seed of `report["best"]` (or the baseline);
    `model_type` is the encoder config's, `environment` the seed's (nerlab.environment)."""
    best = report.get("best") or report["baseline"]
    return (
        "---\n"
        + yaml.safe_dump(
            front_matter(report, best, meta, cfg, manifest, license_id, model_type),
            sort_keys=False,
        )
        + "---\n\n"
        + body(report, best, meta, cfg, manifest, export_dir, environment or {})
    )


def front_matter(
    report: dict,
    best: dict,
    meta: dict,
    cfg: ExperimentConfig,
    manifest: dict,
    license_id: str,
    model_type: str,
) -> dict:
    datasets = [_hub_repo(c, manifest) for c in _corpora(cfg, meta) if _hub_repo(c, manifest)]
    out: dict = {}
    if hub_model(cfg.model):
        out["base_model"] = cfg.model
    out |= {"language": ["en"], "license": license_id}
    if license_id == "other":
        out["license_name"] = LICENSE_NAME
    out |= {
        "library_name": "transformers",
        "pipeline_tag": "token-classification",
        "tags": [
            "token-classification",
            "ner",
            "biomedical",
            "ner-autoresearch",
            *([model_type] if model_type else []),
        ],
    }
    if datasets:
        out["datasets"] = datasets
    test = exported_test(best, meta)
    if test and cfg.data != "synthetic":  # generated sentences are no benchmark to claim
        corpus = meta["corpus"]
        repo = _hub_repo(corpus, manifest)
        dataset = {
            "name": meta["target"] if repo else f"{meta['target']} (local CoNLL files)",
            "type": repo or corpus,
            "split": "test",
        }
        metrics = [
            {"type": "f1", "value": round(test["f1"], 4), "name": "test F1 (entity, strict)"},
            {"type": "precision", "value": round(test["precision"], 4), "name": "test precision"},
            {"type": "recall", "value": round(test["recall"], 4), "name": "test recall"},
        ]
        out["model-index"] = [
            {
                "name": f"ner-autoresearch-{report['tag']}",
                "results": [
                    {
                        "task": {"type": "token-classification", "name": "NER"},
                        "dataset": dataset,
                        "metrics": metrics,
                    }
                ],
            }
        ]
    return out


def exported_test(best: dict, meta: dict) -> dict | None:
    """The exported seed's own test scores (the card's model-index), if it finished."""
    for s in best.get("seeds", []):
        if s["seed"] == meta["seed"] and s.get("status") == "ok" and s.get("test"):
            return s["test"]
    return None


def hub_model(model: str) -> bool:
    """A hub id, not `tiny` and not a local directory (whose path means nothing elsewhere)."""
    if model == TINY or Path(model).expanduser().exists():
        return False
    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return True


def body(
    report: dict,
    best: dict,
    meta: dict,
    cfg: ExperimentConfig,
    manifest: dict,
    export_dir: str,
    environment: dict,
) -> str:
    base = report["baseline"]
    types = ", ".join(meta["types"])
    lines = [
        f"# ner-autoresearch `{report['tag']}`: {meta['target']} ({types})",
        "",
        f"A token classifier for **{types}** mentions (IOB2 tags: {', '.join(meta['labels'])}), "
        f"fine-tuned from {_encoder(cfg)}, by an autonomous experiment loop (ner-autoresearch): "
        f"each experiment changed one training config, was trained under a fixed budget, and was "
        f"kept only if its dev F1 beat the best so far beyond seed noise.",
        "",
        "## Results",
        "",
        f"Entity-level strict micro F1 (seqeval, IOB2), in points, mean ± std over "
        f"{len(report['seeds'])} seeds (each a fresh training run of the config). {TEST_NOTE}",
        "",
        "| config | dev F1 | test F1 | test precision | test recall |",
        "|---|---:|---:|---:|---:|",
        _row("baseline (experiment 1)", base),
    ]
    if not report["best_is_baseline"]:
        lines.append(_row(f"this model's config (experiment {best['n']})", best))
        lines += ["", f"Test F1 difference, best − baseline: {fmt_diff(report['difference'])}."]
    else:
        lines += ["", "No experiment beat the baseline: this is the baseline config."]
    lines += ["", _this_seed(best, meta), ""]
    per_type = best.get("test", {}).get("per_type", {})
    if per_type:
        lines += ["| entity type | mean test F1 over seeds |", "|---|---:|"]
        lines += [f"| {t} | {100 * v:.2f} |" for t, v in per_type.items()]
        lines.append("")
    lines += _training(cfg, report, best, environment)
    lines += _data(cfg, meta, manifest)
    lines += _usage(meta, export_dir)
    lines += _reproduce(report, best, cfg, meta)
    lines += _limitations(cfg, meta)
    return "\n".join(lines) + "\n"


def _encoder(cfg: ExperimentConfig) -> str:
    if cfg.model == TINY:
        return (
            f"a randomly initialised small ModernBERT ({_shape()}) with a WordPiece tokenizer "
            "trained on the prepared corpora (a test model, not a pretrained encoder)"
        )
    if hub_model(cfg.model):
        return f"`{cfg.model}`"
    return (
        f"a local model directory (`{Path(cfg.model).name}`; not a hub id, so the card names "
        "no `base_model`)"
    )


def _this_seed(best: dict, meta: dict) -> str:
    text = (
        f"The weights here are seed {meta['seed']}, the seed with the best **dev** F1 "
        f"({100 * meta['eval_f1']:.2f}); "
    )
    test = exported_test(best, meta)
    if test is None:
        return text + "the test F1 above is the mean over all seeds, not this seed's."
    return text + (
        f"this seed's own test F1 is {100 * test['f1']:.2f} (precision "
        f"{100 * test['precision']:.2f}, recall {100 * test['recall']:.2f}); the table gives the "
        "mean over all seeds."
    )


def _row(name: str, arm: dict) -> str:
    t = arm.get("test")
    p = f"{100 * t['precision']:.2f}" if t else "n/a"
    r = f"{100 * t['recall']:.2f}" if t else "n/a"
    return f"| {name} | {fmt_points(arm, 'dev')} | {fmt_points(arm, 'test')} | {p} | {r} |"


def _training(cfg: ExperimentConfig, report: dict, best: dict, environment: dict) -> list[str]:
    budget = (
        f"{cfg.budget.steps} optimisation steps"
        if cfg.budget.steps
        else f"{cfg.budget.seconds:g} s of training time"
    )
    stages = [
        f"{i}. {s.fraction:.0%} of the budget on {', '.join(s.corpora)}"
        + (f" (mixed {':'.join(f'{r:g}' for r in s.ratios)})" if s.ratios else "")
        for i, s in enumerate(cfg.curriculum, 1)
    ]
    o = cfg.optim
    scope = "restarts per stage" if cfg.schedule_scope == "stage" else "spans the run"
    return [
        "## Training",
        "",
        f"Budget: {budget} per run. Curriculum (a shared encoder, one head per corpus; "
        f"the LR schedule {scope}):",
        "",
        *stages,
        "",
        f"Optimiser: AdamW, lr {o.lr:g}, {o.schedule} schedule with {o.warmup:.0%} warmup, "
        f"batch {o.batch_size} windows, weight decay {o.weight_decay:g}, gradient clip "
        f"{o.grad_clip:g}, {o.freeze_layers} frozen layers. Head: {cfg.head.kind}, dropout "
        f"{cfg.head.dropout:g}. Windows of at most {cfg.max_length} subwords; labels on each "
        f"word's first subword.",
        "",
        f'Hardware: {report["hardware"]}; "{md(best["description"])}" was experiment {best["n"]} '
        f"of tag `{report['tag']}` (commit `{best['commit']}`).",
        "",
        *_software(environment),
    ]


def _software(env: dict) -> list[str]:
    """The versions this seed was trained with (its summary block), when known."""
    return [f"Software: {describe(env)}.", ""] if describe(env) else []


def _data(cfg: ExperimentConfig, meta: dict, manifest: dict) -> list[str]:
    lines = ["## Data", ""]
    for c in _corpora(cfg, meta):
        entry = manifest.get(c, {})
        splits = entry.get("splits", {})
        counts = ", ".join(f"{s} {v['sentences']} sentences" for s, v in splits.items())
        source = entry.get("source", "")
        if source.startswith("synthetic"):  # only what was generated, not the real corpus
            desc = f"generated sentences shaped like `{c}` ({source}), not real text"
        else:
            desc = CORPORA[c].description if c in CORPORA else "a local CoNLL corpus"
            desc += f". Source: {_source(c, manifest)}"
        lines.append(f"- `{c}`: {desc}; {counts}.")
    return [*lines, ""]


def _usage(meta: dict, export_dir: str) -> list[str]:
    return [
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        f'ner = pipeline("token-classification", model="{export_dir}", '
        'aggregation_strategy="first")',
        'ner("Mutations in BRCA1 cause hereditary breast cancer.")',
        "```",
        "",
        "The model was trained with labels on the first subword of each word only, so "
        '`aggregation_strategy="first"` (a word takes its first subword\'s label) matches how it '
        'was trained and scored; `"simple"` also works but may cut an entity at a subword. '
        "The project's `predict.py` tags plain text (JSONL spans with character offsets) or "
        "CoNLL files with the same windowing as training"
        + (" and the CRF's Viterbi decoding." if HEAD_KINDS[meta["head"]].viterbi else "."),
        "",
    ]


def _reproduce(report: dict, best: dict, cfg: ExperimentConfig, meta: dict) -> list[str]:
    data = (
        "python prepare_data.py --synthetic"
        if cfg.data == "synthetic"
        else ("python prepare_data.py --source DIR   # or from the hub: python prepare_data.py")
    )
    k = len(report["seeds"])
    config = report.get("config_path", "configs/current.yaml")
    option = "" if config == "configs/current.yaml" else f" --config {config}"
    return [
        "## Reproduce",
        "",
        "```bash",
        f"git checkout {best['commit']}   # the experiment's commit; its config is {config}",
        data,
        f"python train.py --config {config} --set seed={meta['seed']} --set repeats=1 "
        "--save-model model/   # these weights",
        f"python final.py --tag {report['tag']}{option} --seeds {k} --export DIR   # this "
        "evaluation",
        "```",
        "",
    ]


def _limitations(cfg: ExperimentConfig, meta: dict) -> list[str]:
    lines = [
        "## Limitations",
        "",
        "- Trained and tested on one corpus' annotation guidelines; F1 on other text (clinical "
        "notes, full-text articles, other entity definitions) will be lower.",
        "- The config was selected on dev over many experiments; test is untouched by that "
        "selection, but with few seeds its confidence interval is wide.",
        "- English only; sentences longer than the window are split into windows without "
        "overlap, so an entity at a window edge can be cut.",
    ]
    if HEAD_KINDS[meta["head"]].viterbi:
        lines.append(
            "- This model was trained with a CRF head. The standard class holds its "
            "emission layer only: transformers decodes by argmax, not by the CRF's "
            "constrained Viterbi, so its tags can differ from the scores above; "
            "predict.py applies the CRF."
        )
    if cfg.model == TINY:
        lines.append(
            "- The encoder is the project's tiny random-init test model: use it to "
            "check a pipeline, not to tag real text."
        )
    if cfg.data == "synthetic":
        lines.append("- Trained and tested on generated (synthetic) sentences.")
    return [*lines, ""]


def _corpora(cfg: ExperimentConfig, meta: dict) -> list[str]:
    names = [meta["corpus"]] + [c for s in cfg.curriculum for c in s.corpora]
    return list(dict.fromkeys(_corpus_of(n) for n in names))


def _corpus_of(spec: str) -> str:
    return ALIASES.get(spec, spec).partition(":")[0]


def _hub_repo(corpus: str, manifest: dict) -> str:
    """The hub dataset the prepared corpus came from ("" for local or synthetic data)."""
    source = manifest.get(corpus, {}).get("source", "")
    return source.removeprefix("hub:") if source.startswith("hub:") else ""


def _source(corpus: str, manifest: dict) -> str:
    """Where the data came from, without this machine's paths."""
    source = manifest.get(corpus, {}).get("source", "")
    if source.startswith("hub:"):
        return f"the hub dataset `{_hub_repo(corpus, manifest)}`"
    return "local CoNLL files" if source.startswith("local:") else "unknown"


def _shape() -> str:
    return f"hidden {TINY_SHAPE['hidden_size']}, {TINY_SHAPE['num_hidden_layers']} layers"
