from collections import Counter

import pytest

from nerlab.conll import Sentence
from nerlab.model import load_encoder, load_tokenizer
from nerlab.synthetic import generate
from nerlab.tokenize import IGNORE, cached_encode, encode
from tests.helpers import run_script


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer("tiny", generate("bc5cdr")["train"], tmp_path_factory.mktemp("models"))


def test_first_subword_carries_the_label(tokenizer):
    s = Sentence(["Hydroxychloroquinexyz", "causes", "rash"], ["B-Chemical", "O", "B-Disease"])
    enc = encode([s], tokenizer, max_length=64)
    ids, widx = enc.input_ids[0], enc.word_index[0]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert len(ids) > 5  # the made-up word splits into several subwords
    assert [w for w in widx if w >= 0] == [0, 1, 2]
    labels = enc.labels([s], {"O": 0, "B-Chemical": 1, "I-Chemical": 2, "B-Disease": 3})[0]
    assert labels[0] == IGNORE and labels[1] == 1 and labels[-1] == IGNORE
    assert labels.count(IGNORE) == len(ids) - 3
    # subwords after the first of the long word are ignored, in order
    first_other = widx.index(1)
    assert all(x == IGNORE for x in labels[2:first_other])


def test_long_sentences_are_windowed_and_every_word_predicted_once(tokenizer):
    sents = generate("jnlpba")["dev"][:50]
    long = Sentence(
        [w for s in sents[:10] for w in s.tokens], [t for s in sents[:10] for t in s.tags]
    )
    sents = [*sents, long]
    enc = encode(sents, tokenizer, max_length=16)
    assert max(len(x) for x in enc.input_ids) <= 16
    assert enc.sentence.count(len(sents) - 1) > 3  # the long one became several windows
    seen = Counter((si, w) for wi, si in zip(enc.word_index, enc.sentence) for w in wi if w >= 0)
    assert set(seen) == {(si, w) for si, s in enumerate(sents) for w in range(len(s.tokens))}
    assert max(seen.values()) == 1


def test_a_word_without_subwords_still_gets_a_position(tokenizer):
    s = Sentence(["a", "\u200b", "b"], ["O", "B-X", "O"])
    enc = encode([s], tokenizer, max_length=16)
    assert [w for w in enc.word_index[0] if w >= 0] == [0, 1, 2]


def test_cache_is_reused_and_keyed(tokenizer, tmp_path, monkeypatch):
    sents = generate("ncbi_disease")["dev"]
    first = cached_encode(sents, tokenizer, 32, tmp_path, fingerprint="abc")
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def boom(*a, **k):
        raise AssertionError("cache miss")

    monkeypatch.setattr("nerlab.tokenize.encode", boom)
    again = cached_encode(sents, tokenizer, 32, tmp_path, fingerprint="abc")
    assert again == first
    with pytest.raises(AssertionError, match="cache miss"):
        cached_encode(sents, tokenizer, 64, tmp_path, fingerprint="abc")
    with pytest.raises(AssertionError, match="cache miss"):
        cached_encode(sents, tokenizer, 32, tmp_path, fingerprint="changed")


def test_tiny_tokenizer_is_trained_once_and_model_reproducible_by_seed(tmp_path, monkeypatch):
    texts = generate("linnaeus")["train"]
    t1 = load_tokenizer("tiny", texts, tmp_path)
    # built once per text and reused from the cache: a second load must not build it again
    monkeypatch.setattr("nerlab.model._build_wordpiece", lambda *a: 1 / 0)
    t2 = load_tokenizer("tiny", texts, tmp_path)
    assert t1.get_vocab() == t2.get_vocab()
    assert t1.pad_token_id is not None and t1.cls_token_id is not None
    m1, m2 = load_encoder("tiny", t1, seed=3), load_encoder("tiny", t1, seed=3)
    assert all((a == b).all() for a, b in zip(m1.parameters(), m2.parameters()))
    m3 = load_encoder("tiny", t1, seed=4)
    assert any((a != b).any() for a, b in zip(m1.parameters(), m3.parameters()))
    assert m1.config.hidden_size == 128 and m1.config.num_hidden_layers == 4


def test_the_tiny_tokenizer_is_the_same_in_every_fresh_home(tmp_path):
    """Two processes (each its own hash seed), two empty caches: byte-identical tokenizers."""
    code = (
        "import sys; from nerlab.model import load_tokenizer; from nerlab.synthetic import "
        "generate\n"
        "load_tokenizer('tiny', generate('bc5cdr')['train'] + generate('linnaeus')['train'], "
        "sys.argv[1])\n"
    )
    saved = []
    for home in ("a", "b"):
        r = run_script("-c", code, str(tmp_path / home), home=tmp_path / home)
        assert r.returncode == 0, r.stderr
        (path,) = (tmp_path / home).glob("tiny-tokenizer-*/tokenizer.json")
        saved.append(path.read_bytes())
    assert saved[0] == saved[1]


def test_byte_level_bpe_gets_a_prefix_space_per_word(tmp_path):
    """A hub tokenizer like ModernBERT's (byte-level BPE) loaded through AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["[CLS]", "[SEP]", "[PAD]", "[UNK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    bpe.train_from_iterator([" ".join(s.tokens) for s in generate("bc5cdr")["train"]], trainer)
    PreTrainedTokenizerFast(
        tokenizer_object=bpe, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        unk_token="[UNK]",
    ).save_pretrained(tmp_path / "bbpe")  # fmt: skip
    tok = load_tokenizer(str(tmp_path / "bbpe"), None, tmp_path)
    words = ["Aspirin", "induced", "seizures"]
    enc = tok([words], is_split_into_words=True, add_special_tokens=False)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0])
    firsts = [pieces[enc.word_ids(0).index(w)] for w in range(3)]
    assert all(p.startswith("Ġ") for p in firsts), pieces  # words are not glued together
    assert tok.tokenize("induced") == tok.tokenize(" induced")


def test_a_damaged_cache_file_is_rebuilt_with_a_note(tokenizer, tmp_path, capsys):
    sents = generate("ncbi_disease")["dev"]
    first = cached_encode(sents, tokenizer, 32, tmp_path, fingerprint="abc")
    (cached,) = tmp_path.glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:100])  # truncated: a disk filled up, a power loss
    assert cached_encode(sents, tokenizer, 32, tmp_path, fingerprint="abc") == first
    assert f"note: {cached} is damaged" in capsys.readouterr().out
    assert cached_encode(sents, tokenizer, 32, tmp_path, fingerprint="abc") == first
    assert "damaged" not in capsys.readouterr().out  # the rebuilt file is whole


def test_a_damaged_tiny_tokenizer_is_built_again_with_a_note(tmp_path, capsys):
    texts = generate("linnaeus")["train"]
    vocab = load_tokenizer("tiny", texts, tmp_path).get_vocab()
    (saved,) = tmp_path.glob("tiny-tokenizer-*/tokenizer.json")
    saved.write_text(saved.read_text()[:500])
    again = load_tokenizer("tiny", texts, tmp_path).get_vocab()
    assert again == vocab
    assert f"note: {saved.parent} is damaged" in capsys.readouterr().out


def test_a_sentence_past_the_models_length_is_windowed_without_a_warning(tmp_path):
    """transformers warns of indexing errors for a sequence longer than the model's maximum;
    encode windows it, so the warning would be false (a fresh process: it warns once)."""
    code = (
        "from nerlab.model import load_tokenizer; from nerlab.synthetic import generate\n"
        "from nerlab.conll import Sentence; from nerlab.tokenize import encode\n"
        f"t = load_tokenizer('tiny', generate('bc5cdr')['train'], {str(tmp_path)!r})\n"
        "t.model_max_length = 16\n"
        "s = generate('jnlpba')['dev'][0]\n"
        "print(len(encode([Sentence(s.tokens * 20, s.tags * 20)], t, max_length=16)))\n"
    )
    r = run_script("-c", code, home=tmp_path)
    assert r.returncode == 0 and int(r.stdout) > 1, r.stderr
    assert r.stderr == ""
