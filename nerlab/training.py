"""The training step and what it needs, shared by train.py, the final evaluation and the
throughput benchmark: tasks (a corpus view's tokenised windows and labels), the model (a shared
encoder and one head per view), the optimiser, one optimisation step, and prediction."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import torch
from torch import nn

from nerlab.batches import endless, eval_order, padded
from nerlab.config import ExperimentConfig, head_key
from nerlab.conll import Sentence, restrict_tags, to_iob2
from nerlab.corpora import View
from nerlab.heads import TokenHead
from nerlab.store import home
from nerlab.tokenize import Encoded, cached_encode

# -----------------------------------------------------------------------------
# data: one Task per corpus view used, holding its tokenised windows and labels


@dataclass
class Task:
    view: View
    sentences: list[Sentence]  # tags narrowed to the view's types
    encoded: Encoded
    labels: list[list[int]]

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.encoded.input_ids]


def load_task(cfg: ExperimentConfig, view: View, split: str, tokenizer) -> Task:
    store = cfg.store()
    raw = store.read(view.corpus, split)
    keep = frozenset(view.types)
    sentences = [Sentence(s.tokens, restrict_tags(s.tags, keep)) for s in raw]
    fingerprint = f"{cfg.data}:{view.corpus}:{split}:{store.fingerprint(view.corpus, split)}"
    encoded = cached_encode(raw, tokenizer, cfg.max_length, home() / "tokenized", fingerprint)
    label_ids = {tag: i for i, tag in enumerate(view.labels)}
    return Task(view, sentences, encoded, encoded.labels(sentences, label_ids))


def tokenizer_texts(cfg: ExperimentConfig) -> list[Sentence]:
    """The tiny tokenizer learns its vocabulary from every prepared train split, so all
    experiments on one data root share one tokenizer whatever their curriculum."""
    store = cfg.store()
    store.require(cfg.corpora())  # else a deleted data root reads as no text, a vaguer error
    return [
        s
        for name, entry in sorted(store.manifest().items())
        if "train" in entry["splits"]
        for s in store.read(name, "train")
    ]


# -----------------------------------------------------------------------------
# model: a shared encoder and one head per view


class Tagger(nn.Module):
    def __init__(self, encoder: nn.Module, views: list[View], kind: str, dropout: float):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict(
            {head_key(v): TokenHead(hidden, v.labels, kind, dropout) for v in views}
        )

    def states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.last_hidden_state


def freeze(encoder: nn.Module, n_layers: int) -> None:
    """Freeze the embeddings and the first n encoder layers (ModernBERT or BERT layout)."""
    if n_layers == 0:
        return
    layers = getattr(encoder, "layers", None) or encoder.encoder.layer
    for module in [encoder.embeddings, *layers[:n_layers]]:
        module.requires_grad_(False)


def make_optimizer(model: nn.Module, cfg: ExperimentConfig, device: torch.device):
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [  # no weight decay on biases and norm weights, as in BERT fine-tuning
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    # fused kernels exist for CUDA, CPU and MPS; the default for-loop AdamW is slower on CPU
    fused = device.type in ("cuda", "cpu", "mps")
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, fused=fused)


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    # CPU (and MPS): the process's peak resident memory; ru_maxrss is in KiB on Linux
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


# -----------------------------------------------------------------------------
# one step, and prediction


def train_step(model, head, batch, optimizer, lr: float, cfg, autocast) -> float:
    """One optimisation step on one batch; returns the loss (its `.item()` also syncs)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        states = model.states(batch)
    loss = head.loss(states.float(), batch["labels"])
    loss.backward()
    if cfg.optim.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def task_batches(task: Task, batch_size: int, seed: int, pad_id: int):
    for idx in endless(task.lengths, batch_size, seed):
        ids = [task.encoded.input_ids[i] for i in idx]
        yield padded(ids, [task.labels[i] for i in idx], pad_id)


@torch.no_grad()
def predict(model, task: Task, cfg, device, autocast, pad_id) -> list[list[str]]:
    """Every word of every target sentence gets a tag (windows stitched back per sentence)."""
    model.eval()
    head = model.heads[head_key(task.view)]
    enc = task.encoded
    out: list[list[str]] = [["O"] * len(s.tokens) for s in task.sentences]
    for idx in eval_order(task.lengths, cfg.optim.batch_size * 2):
        batch = padded([enc.input_ids[i] for i in idx], [enc.word_index[i] for i in idx], pad_id)
        words = batch.pop("labels")  # word index per subword, -100 where none
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast:
            states = model.states(batch)
        tags = head.decode(states.float(), (words >= 0).to(device))
        for row, i in enumerate(idx):
            positions = [w for w in enc.word_index[i] if w >= 0]
            for w, tag in zip(positions, tags[row]):
                out[enc.sentence[i]][w] = tag
    # IOB2 repair on whole sentences, so an entity that spans two windows stays one entity
    return [to_iob2(tags)[0] for tags in out]


# -----------------------------------------------------------------------------
# model FLOPs utilisation, as autoresearch prints it

# Dense bf16 peak FLOP/s (no sparsity) of GPUs we know, by a substring of the CUDA device name.
# The more specific names come first.
BF16_PEAK = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12,
             "L40S": 362e12, "L4": 121e12}  # fmt: skip


def flops_per_token(encoder: nn.Module, seq_len: float) -> float:
    """Training FLOPs per token: 6 per weight outside the embeddings (forward + backward) plus
    attention's 12 * layers * hidden * sequence length (Kaplan et al., 2020; as nanoGPT)."""
    cfg = encoder.config
    embedding = encoder.get_input_embeddings().weight.numel()
    weights = sum(p.numel() for p in encoder.parameters()) - embedding
    return 6 * weights + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def mfu_percent(flops_per_second: float, device: torch.device) -> float | None:
    """Achieved over peak bf16 FLOP/s, in percent; None off CUDA or for an unknown GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
    return None if peak is None else 100 * flops_per_second / peak
