"""The corpus registry: five biomedical corpora, type-narrowed views, and their hub sources."""

from __future__ import annotations

from dataclasses import dataclass, field

from nerlab.errors import UserError

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class HubSource:
    """Where a user with internet loads a corpus from (parquet-backed ids: datasets 5.x runs no
    loading scripts). Integer tags are named through the dataset's own ClassLabel names."""

    repo: str
    config: str | None = None
    revision: str | None = None
    splits: dict[str, str] = field(default_factory=dict)  # our split -> hub split
    tags_column: str = "ner_tags"
    bare_type: str | None = None  # hub labels are plain B/I: this is their entity type
    rename: dict[str, str] = field(default_factory=dict)  # hub type -> our type
    # Only for datasets whose tags column is plain ints: the dataset's own published label2id.
    label_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Corpus:
    name: str
    types: tuple[str, ...]
    description: str
    hub: HubSource | None = None


_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}

CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in [
        Corpus(
            "bc5cdr",
            ("Chemical", "Disease"),
            "BioCreative V CDR: chemicals and diseases in 1,500 PubMed abstracts",
            # tner stores tags as plain ints, named by its label2id file (tner/label2id,
            # files/bc5cdr.json): {"O": 0, "B-Chemical": 1, "B-Disease": 2, ...}.
            HubSource(
                "tner/bc5cdr",
                revision="refs/convert/parquet",
                splits=_HUB_SPLITS,
                tags_column="tags",
                label_names=("O", "B-Chemical", "B-Disease", "I-Disease", "I-Chemical"),
            ),
        ),
        Corpus(
            "ncbi_disease",
            ("Disease",),
            "NCBI Disease: disease mentions in 793 PubMed abstracts",
            HubSource("ncbi/ncbi_disease", splits=_HUB_SPLITS),
        ),
        Corpus(
            "bc2gm",
            ("Gene",),
            "BioCreative II Gene Mention: genes and gene products in 20,000 sentences",
            HubSource("spyysalo/bc2gm_corpus", splits=_HUB_SPLITS, rename={"GENE": "Gene"}),
        ),
        Corpus(
            "jnlpba",
            ("DNA", "RNA", "protein", "cell_type", "cell_line"),
            "JNLPBA 2004: molecular biology entities in 2,404 GENIA abstracts",
            # The shared-task release has train and test only (served as "validation").
            HubSource("jnlpba/jnlpba", splits={"train": "train", "test": "validation"}),
        ),
        Corpus(
            "linnaeus",
            ("Species",),
            "LINNAEUS: species names in 100 full-text articles",
            HubSource("linnaeus", splits=_HUB_SPLITS, bare_type="Species"),
        ),
    ]
}

ALIASES: dict[str, str] = {
    "bc5cdr_chem": "bc5cdr:Chemical",
    "bc5cdr_disease": "bc5cdr:Disease",
}


@dataclass(frozen=True)
class View:
    """A corpus, possibly narrowed to some of its entity types (the others become O)."""

    spec: str  # as the user wrote it: "bc5cdr_chem", "bc5cdr:Chemical", "ncbi_disease"
    corpus: str
    types: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        """Head label set: O, then B-/I- per type, in a fixed order."""
        return ["O"] + [f"{p}-{t}" for t in self.types for p in ("B", "I")]


def resolve_view(spec: str, known: dict[str, tuple[str, ...]] | None = None) -> View:
    """Parse `name`, `alias` or `name:Type[+Type]`; `known` adds local corpora to the registry."""
    registry = {n: c.types for n, c in CORPORA.items()} | (known or {})
    expanded = ALIASES.get(spec, spec)
    name, _, narrow = expanded.partition(":")
    if name not in registry:
        raise UserError(
            f"unknown corpus {name!r}; valid names: {', '.join(sorted(registry))}; "
            f"views: {', '.join(sorted(ALIASES))}, or <name>:<Type>"
        )
    types = registry[name]
    if not narrow:
        return View(spec, name, tuple(types))
    chosen = tuple(narrow.split("+"))
    bad = [t for t in chosen if t not in types]
    if bad:
        raise UserError(
            f"corpus {name!r} has no entity type {bad[0]!r}; its types: {', '.join(types)}"
        )
    return View(spec, name, chosen)


def hub_labels(features, source: HubSource) -> list[str]:
    """Our BIO strings for the hub's integer tags, from the dataset's own ClassLabel names."""
    feature = features[source.tags_column]
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None) or list(source.label_names)
    if not names:
        raise UserError(
            f"{source.repo}: column {source.tags_column!r} has no ClassLabel names; "
            "cannot map its integer tags to BIO strings"
        )
    out = []
    for name in names:
        prefix, _, etype = name.partition("-")
        if name == "O":
            out.append("O")
        elif prefix in ("B", "I") and etype:
            out.append(f"{prefix}-{source.rename.get(etype, etype)}")
        elif prefix in ("B", "I") and source.bare_type:
            out.append(f"{prefix}-{source.bare_type}")
        else:
            raise UserError(f"{source.repo}: label {name!r} is not O, B-<type> or I-<type>")
    return out
