import pytest
from datasets import ClassLabel, Dataset, Features, List, Value

from nerlab.corpora import CORPORA, HubSource, hub_labels, resolve_view
from nerlab.errors import UserError
from nerlab.prepare import convert_hub_split


def test_registry_names_and_types():
    assert {n: c.types for n, c in CORPORA.items()} == {
        "bc5cdr": ("Chemical", "Disease"),
        "ncbi_disease": ("Disease",),
        "bc2gm": ("Gene",),
        "jnlpba": ("DNA", "RNA", "protein", "cell_type", "cell_line"),
        "linnaeus": ("Species",),
    }


def test_views_aliases_and_general_syntax():
    assert resolve_view("bc5cdr_chem").types == ("Chemical",)
    assert resolve_view("bc5cdr_disease").types == ("Disease",)
    assert resolve_view("bc5cdr:Chemical") == resolve_view("bc5cdr:Chemical")
    v = resolve_view("jnlpba:DNA+RNA")
    assert (v.corpus, v.types) == ("jnlpba", ("DNA", "RNA"))
    assert v.labels == ["O", "B-DNA", "I-DNA", "B-RNA", "I-RNA"]
    assert resolve_view("bc5cdr").labels == [
        "O",
        "B-Chemical",
        "I-Chemical",
        "B-Disease",
        "I-Disease",
    ]


def test_unknown_corpus_and_type_list_valid_names():
    with pytest.raises(UserError, match="unknown corpus 'pubmed'.*ncbi_disease.*bc5cdr_chem"):
        resolve_view("pubmed")
    with pytest.raises(UserError, match="no entity type 'Gene'; its types: Chemical, Disease"):
        resolve_view("bc5cdr:Gene")


def test_local_corpora_join_the_registry():
    assert resolve_view("mycorpus", {"mycorpus": ("Drug",)}).types == ("Drug",)


def _hub_dataset(names: list[str]) -> Dataset:
    features = Features(
        {"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=names))}
    )
    return Dataset.from_dict(
        {"tokens": [["BRCA1", "binds", "p53"]], "ner_tags": [[1, 0, 1]]}, features=features
    )


def test_hub_conversion_uses_the_datasets_own_label_names():
    # Deliberately not in O/B/I order: a hard-coded guess would get this wrong.
    ds = _hub_dataset(["I-GENE", "B-GENE", "O"])
    source = HubSource("x/y", rename={"GENE": "Gene"})
    assert hub_labels(ds.features, source) == ["I-Gene", "B-Gene", "O"]
    sents = convert_hub_split(ds, ds.features, source)
    assert sents[0].tags == ["B-Gene", "I-Gene", "B-Gene"]


def test_hub_bare_bio_labels_take_the_corpus_type():
    ds = _hub_dataset(["O", "B", "I"])
    sents = convert_hub_split(ds, ds.features, HubSource("linnaeus", bare_type="Species"))
    assert sents[0].tags == ["B-Species", "O", "B-Species"]


def test_hub_plain_int_tags_need_published_names():
    features = Features({"tokens": List(Value("string")), "tags": List(Value("int32"))})
    with pytest.raises(UserError, match="no ClassLabel names"):
        hub_labels(features, HubSource("x/y", tags_column="tags"))
    src = HubSource("x/y", tags_column="tags", label_names=("O", "B-Chemical", "I-Chemical"))
    assert hub_labels(features, src) == ["O", "B-Chemical", "I-Chemical"]


def test_every_corpus_has_a_hub_source_with_a_train_split():
    for c in CORPORA.values():
        assert c.hub is not None and c.hub.splits.get("train") == "train"
