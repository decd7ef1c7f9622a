import itertools

import pytest
import torch

from nerlab.conll import to_iob2
from nerlab.heads import CRF, TokenHead, gather_words
from nerlab.tokenize import IGNORE

LABELS = ["O", "B-X", "I-X", "B-Y", "I-Y"]


def path_score(crf: CRF, em: torch.Tensor, path: tuple[int, ...]) -> torch.Tensor:
    """Score of one path by the definition: start + emissions + transitions + end."""
    trans = crf.transitions + crf.trans_mask
    s = crf.start[path[0]] + crf.start_mask[path[0]] + em[0, path[0]]
    for a, b, e in zip(path, path[1:], em[1:]):
        s = s + trans[a, b] + e[b]
    return s + crf.end[path[-1]]


@pytest.fixture
def crf_and_inputs():
    torch.manual_seed(0)
    crf = CRF(LABELS)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    em = torch.randn(3, 4, len(LABELS))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    return crf, em, mask


def test_log_partition_and_viterbi_match_brute_force(crf_and_inputs):
    crf, em, mask = crf_and_inputs
    logz = crf.log_partition(em, mask)
    best = crf.viterbi(em, mask)
    for b in range(em.size(0)):
        n = int(mask[b].sum())
        paths = list(itertools.product(range(len(LABELS)), repeat=n))
        scores = torch.stack([path_score(crf, em[b, :n], p) for p in paths])
        assert logz[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-4)
        assert tuple(best[b]) == paths[int(scores.argmax())]


def test_score_of_given_tags_and_likelihood_is_a_probability(crf_and_inputs):
    crf, em, mask = crf_and_inputs
    tags = torch.tensor([[1, 2, 0, 3], [3, 4, 4, 0], [0, 0, 0, 0]])
    got = crf.score(em, tags, mask)
    for b in range(3):
        n = int(mask[b].sum())
        want = path_score(crf, em[b, :n], tuple(tags[b, :n].tolist()))
        assert got[b].item() == pytest.approx(want.item(), abs=1e-4)
    assert (crf.log_likelihood(em, tags, mask) <= 0).all()


def test_viterbi_never_outputs_invalid_iob2(crf_and_inputs):
    crf, _, _ = crf_and_inputs
    em = torch.zeros(1, 3, len(LABELS))
    em[0, :, 2] = 10.0  # emissions shout I-X everywhere
    assert [LABELS[i] for i in crf.viterbi(em, torch.ones(1, 3, dtype=torch.bool))[0]] == [
        "B-X", "I-X", "I-X"
    ]  # fmt: skip


def test_gather_words_packs_labelled_positions():
    scores = torch.arange(2 * 5, dtype=torch.float).view(2, 5, 1)
    labels = torch.tensor([[IGNORE, 1, IGNORE, 2, IGNORE], [IGNORE, 3, 4, 0, IGNORE]])
    em, tags, mask = gather_words(scores, labels)
    assert em[..., 0].tolist() == [[1, 3, 0], [6, 7, 8]]
    assert tags.tolist() == [[1, 2, 0], [3, 4, 0]]
    assert mask.tolist() == [[True, True, False], [True, True, True]]


@pytest.mark.parametrize("kind", ["linear", "mlp", "crf"])
def test_heads_learn_a_toy_task(kind):
    torch.manual_seed(0)
    head = TokenHead(8, LABELS, kind, dropout=0.0)
    states = torch.randn(16, 6, 8)
    labels = torch.randint(0, 2, (16, 6)) * (states[..., 0] > 0)  # B-X where feature 0 > 0
    labels[:, 0] = IGNORE
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    first = head.loss(states, labels).item()
    for _ in range(100):
        loss = head.loss(states, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 2
    decoded = head.decode(states, labels != IGNORE)
    assert len(decoded) == 16 and all(len(r) == 5 for r in decoded)


def test_linear_decode_is_raw_and_repaired_per_sentence():
    head = TokenHead(2, LABELS, "linear", dropout=0.0)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.tensor([0, 0, 5.0, 0, 0]))  # always I-X
    out = head.decode(torch.zeros(1, 3, 2), torch.ones(1, 3, dtype=torch.bool))
    assert out == [["I-X", "I-X", "I-X"]]  # raw: a window may continue the previous one
    assert to_iob2(out[0])[0] == ["B-X", "I-X", "I-X"]  # what predict() does per sentence
