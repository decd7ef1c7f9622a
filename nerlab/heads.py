"""Token-classification heads over encoder states: linear, mlp, or a linear-chain CRF.

All heads score the first subword of each word. `linear` and `mlp` decode by argmax, then repair
invalid IOB2 (an I-X that continues no X becomes B-X, as conlleval reads it). The CRF decodes with
Viterbi under IOB2 constraints (no O -> I-X, no B-X -> I-Y), so its output is always valid.
What each kind supports (export, Viterbi) is in nerlab.head_kinds.
"""

from __future__ import annotations

import torch
from torch import nn

from nerlab.head_kinds import HEAD_KINDS
from nerlab.tokenize import IGNORE

NEG = -1e4  # "impossible" transition score; finite so sums stay finite


class TokenHead(nn.Module):
    def __init__(self, hidden: int, labels: list[str], kind: str, dropout: float):
        super().__init__()
        self.labels, self.kind = labels, kind
        n = len(labels)
        self.dropout = nn.Dropout(dropout)
        if kind == "mlp":
            self.proj = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, n))
        else:
            self.proj = nn.Linear(hidden, n)
        self.crf = CRF(labels) if HEAD_KINDS[kind].viterbi else None

    def emissions(self, states: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(states)).float()

    def loss(self, states: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scores = self.emissions(states)
        if self.crf is None:
            return nn.functional.cross_entropy(
                scores.view(-1, scores.size(-1)), labels.view(-1), ignore_index=IGNORE
            )
        em, tags, mask = gather_words(scores, labels)
        return -self.crf.log_likelihood(em, tags, mask).mean()

    @torch.no_grad()
    def decode(self, states: torch.Tensor, labels_mask: torch.Tensor) -> list[list[str]]:
        """Tags of the labelled (first-subword) positions of each row. CRF output is valid IOB2;
        argmax output is raw: repair it with `to_iob2` once windows are stitched to sentences."""
        scores = self.emissions(states)
        if self.crf is None:
            ids = scores.argmax(-1)
            rows = [ids[b][labels_mask[b]].tolist() for b in range(ids.size(0))]
            return [[self.labels[i] for i in r] for r in rows]  # repaired per sentence by caller
        em, _, mask = gather_words(scores, torch.where(labels_mask, 0, IGNORE))
        return [[self.labels[i] for i in r] for r in self.crf.viterbi(em, mask)]


def gather_words(scores: torch.Tensor, labels: torch.Tensor):
    """Pack the labelled positions of each row to the left: (emissions, tags, mask) per word."""
    keep = labels != IGNORE
    counts = keep.sum(1)
    width = max(int(counts.max()), 1)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    em = scores.gather(1, order.unsqueeze(-1).expand(-1, -1, scores.size(-1)))
    tags = labels.gather(1, order).clamp(min=0)
    mask = torch.arange(width, device=labels.device)[None, :] < counts[:, None]
    return em, tags, mask


class CRF(nn.Module):
    """Linear-chain CRF with IOB2 constraints; batched forward algorithm and Viterbi."""

    def __init__(self, labels: list[str]):
        super().__init__()
        n = len(labels)
        self.transitions = nn.Parameter(torch.zeros(n, n))
        self.start = nn.Parameter(torch.zeros(n))
        self.end = nn.Parameter(torch.zeros(n))
        allowed = torch.tensor([[_allowed(a, b) for b in labels] for a in labels])
        self.register_buffer("trans_mask", torch.where(allowed, 0.0, NEG), persistent=False)
        start_ok = torch.tensor([not lab.startswith("I-") for lab in labels])
        self.register_buffer("start_mask", torch.where(start_ok, 0.0, NEG), persistent=False)

    def _trans(self) -> torch.Tensor:
        return self.transitions + self.trans_mask

    def score(self, em: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised score of the given tag paths."""
        b = torch.arange(em.size(0), device=em.device)
        s = self.start[tags[:, 0]] + self.start_mask[tags[:, 0]] + em[b, 0, tags[:, 0]]
        trans = self._trans()
        for t in range(1, em.size(1)):
            step = trans[tags[:, t - 1], tags[:, t]] + em[b, t, tags[:, t]]
            s = s + step * mask[:, t]
        last = tags.gather(1, (mask.sum(1) - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        return s + self.end[last]

    def log_partition(self, em: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        alpha = self.start + self.start_mask + em[:, 0]
        trans = self._trans()
        for t in range(1, em.size(1)):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + em[:, t]
            alpha = torch.where(mask[:, t : t + 1], nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def log_likelihood(self, em, tags, mask) -> torch.Tensor:
        return self.score(em, tags, mask) - self.log_partition(em, mask)

    @torch.no_grad()
    def viterbi(self, em: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        score = self.start + self.start_mask + em[:, 0]
        trans = self._trans()
        back = []
        for t in range(1, em.size(1)):
            best, idx = (score.unsqueeze(2) + trans.unsqueeze(0)).max(dim=1)
            nxt = best + em[:, t]
            score = torch.where(mask[:, t : t + 1], nxt, score)
            back.append(
                torch.where(
                    mask[:, t : t + 1], idx, torch.arange(idx.size(1), device=em.device)[None]
                )
            )
        score = score + self.end
        paths = []
        for b in range(em.size(0)):
            n = int(mask[b].sum())
            tag = int(score[b].argmax())
            path = [tag]
            for t in range(em.size(1) - 2, -1, -1):
                tag = int(back[t][b, tag])
                path.append(tag)
            paths.append(path[::-1][:n])
        return paths


def _allowed(prev: str, cur: str) -> bool:
    """IOB2: I-X may only follow B-X or I-X."""
    return not cur.startswith("I-") or prev[2:] == cur[2:] and prev != "O"
