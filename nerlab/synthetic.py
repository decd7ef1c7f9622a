"""Synthetic corpora: the five corpus names with their entity types, generated from small
lexicons and sentence templates. Deterministic by seed, and learnable (the entity words and
their contexts are regular), so the offline demo and the tests have data to learn from."""

from __future__ import annotations

import random

from nerlab.conll import Sentence
from nerlab.corpora import CORPORA

LEXICON: dict[str, list[str]] = {
    "Chemical": [
        "aspirin",
        "cisplatin",
        "doxorubicin",
        "valproic acid",
        "lithium carbonate",
        "haloperidol",
        "cocaine",
        "nicotine",
        "tamoxifen",
        "methotrexate",
        "heparin",
        "cyclosporine",
        "morphine",
        "caffeine",
        "dexamethasone",
        "warfarin",
    ],
    "Disease": [
        "breast cancer",
        "hepatitis",
        "cardiac arrhythmia",
        "renal failure",
        "seizures",
        "hypertension",
        "diabetes mellitus",
        "Alzheimer disease",
        "leukemia",
        "asthma",
        "myocardial infarction",
        "colorectal adenoma",
        "ataxia telangiectasia",
        "Huntington disease",
        "neutropenia",
        "schizophrenia",
    ],
    "Gene": [
        "BRCA1",
        "p53",
        "tumor necrosis factor",
        "EGFR",
        "insulin receptor",
        "MYC",
        "cyclin D1",
        "interleukin 6",
        "KRAS",
        "PTEN",
        "HER2",
        "STAT3",
        "VEGF",
        "CD4",
    ],
    "DNA": [
        "IL-2 promoter",
        "kappa B site",
        "HIV-1 LTR",
        "c-fos enhancer",
        "GATA motif",
        "globin gene",
    ],
    "RNA": ["c-myc mRNA", "IL-2 mRNA", "GATA-1 transcripts", "globin mRNA", "TNF mRNA"],
    "protein": [
        "NF-kappa B",
        "IL-2",
        "c-Jun",
        "GATA-1",
        "STAT1",
        "protein kinase C",
        "IkappaB alpha",
        "AP-1",
    ],
    "cell_type": [
        "T cells",
        "monocytes",
        "B lymphocytes",
        "erythroid cells",
        "macrophages",
        "neutrophils",
    ],
    "cell_line": ["Jurkat cells", "HeLa cells", "U937 cells", "K562 cells", "THP-1 cells"],
    "Species": [
        "human",
        "mouse",
        "Escherichia coli",
        "rat",
        "Saccharomyces cerevisiae",
        "zebrafish",
        "Drosophila melanogaster",
        "patients",
        "Arabidopsis thaliana",
    ],
}

# {Type} slots are entity mentions; every other word is context.
TEMPLATES: dict[str, list[str]] = {
    "Chemical": [
        "Treatment with {Chemical} was well tolerated .",
        "Plasma levels of {Chemical} increased after the second dose .",
        "We compared {Chemical} with {Chemical} in a randomized trial .",
    ],
    "Disease": [
        "Patients with {Disease} were enrolled in the study .",
        "The risk of {Disease} was higher in the cohort .",
        "{Disease} is a common cause of hospital admission .",
    ],
    "Chemical+Disease": [
        "{Chemical} induced {Disease} in a subset of patients .",
        "The use of {Chemical} is associated with {Disease} .",
        "{Disease} developed after exposure to {Chemical} .",
    ],
    "Gene": [
        "Expression of {Gene} was reduced in tumor samples .",
        "Mutations in {Gene} and {Gene} were detected .",
        "We cloned the {Gene} gene from a cDNA library .",
    ],
    "DNA": [
        "Binding to the {DNA} requires {protein} .",
        "Deletion of the {DNA} abolished activity in {cell_type} .",
    ],
    "RNA": [
        "Levels of {RNA} rose in {cell_line} after stimulation .",
        "{protein} stabilizes {RNA} in {cell_type} .",
    ],
    "protein": [
        "Activation of {protein} was observed in {cell_type} .",
        "{protein} translocates to the nucleus in {cell_line} .",
    ],
    "Species": [
        "Samples were collected from {Species} and {Species} .",
        "The genome of {Species} encodes a similar enzyme .",
        "Infection of {Species} caused weight loss .",
    ],
}
NEUTRAL = [
    "The results were confirmed in an independent experiment .",
    "No significant difference was found between the two groups .",
    "Data are presented as mean and standard deviation .",
]

SIZES = {"train": 2000, "dev": 400, "test": 400}


def _templates(types: tuple[str, ...]) -> list[str]:
    keys = [k for k in TEMPLATES if set(k.split("+")) <= set(types)]
    if "protein" in types:  # jnlpba templates mix its five types
        keys = ["DNA", "RNA", "protein"]
    return [t for k in keys for t in TEMPLATES[k]]


def _render(template: str, rng: random.Random, held_out: bool) -> Sentence:
    tokens: list[str] = []
    tags: list[str] = []
    for word in template.split():
        if word.startswith("{") and word.endswith("}"):
            etype = word[1:-1]
            names = LEXICON[etype] if held_out else _seen(LEXICON[etype])
            for i, w in enumerate(rng.choice(names).split()):
                tokens.append(w)
                tags.append(("B-" if i == 0 else "I-") + etype)
        else:
            tokens.append(word)
            tags.append("O")
    return Sentence(tokens, tags)


def _seen(names: list[str]) -> list[str]:
    """Every fourth lexicon entry never occurs in train: dev/test then hold some unseen
    mentions that only context can find, so scores are high but not saturated."""
    return [n for i, n in enumerate(names) if i % 4 != 3]


def generate(corpus: str, seed: int = 0) -> dict[str, list[Sentence]]:
    """Train/dev/test splits for one corpus name; same seed, same sentences."""
    types = CORPORA[corpus].types
    templates = _templates(types)
    out = {}
    for i, (split, n) in enumerate(SIZES.items()):
        rng = random.Random(f"{corpus}/{split}/{seed + i}")
        out[split] = [
            _render(rng.choice(NEUTRAL if rng.random() < 0.1 else templates), rng, split != "train")
            for _ in range(n)
        ]
    return out
