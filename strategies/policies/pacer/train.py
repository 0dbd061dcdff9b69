"""Training the pre-verifier on collected data: splits, examples and the network's fit.

Rounds are rebuilt from per-position greedy outcomes: a round starting at position s drafts
s, s+1, ...; the label of position s+i is `accepted[s+i]`, and positions after the first rejection
are censored (dropped): the network learns the hazard P(token accepted | earlier ones accepted),
exactly what a block score multiplies. Every start position is used, so a token preceded by r
accepted tokens appears at round positions 0..r.

Choosing the block size and threshold for speed, the held-out metrics and `fit` (split, train,
tune, report) are in `tune.py`, which builds on this module.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Sequence

import attrs
import torch
from torch import nn

from .collect import PacerData
from .network import PacerConfig, PreVerifier


@attrs.frozen
class TrainSettings:
    arch: str = "mlp"
    width: int = 32
    hidden_rank: int = 8
    embedding_rank: int = 0
    epochs: int = 3
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01
    reject_weight: float = 1.0  # BCE weight of rejections (label 0); SpecDec++ uses 6
    max_draft: int = 24
    block_sizes: tuple[int, ...] = (1, 2, 3, 4)
    thresholds: tuple[float, ...] = tuple(round(0.02 * i, 2) for i in range(1, 50))
    seed: int = 0
    split: tuple[float, float] = (0.8, 0.1)  # train and dev fractions of the sequences; the rest is test


# ---------------------------------------------------------------------------- splits and rounds
def split_sequences(count: int, seed: int, fractions: tuple[float, float]) -> tuple[list[int], list[int], list[int]]:
    """Sequence ids for train / dev / test (held out), shuffled by `seed`; dev and test non-empty when possible."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    dev = max(1, round(count * fractions[1])) if count >= 3 else 0
    test = max(1, count - round(count * fractions[0]) - dev) if count >= 3 else 0
    train = count - dev - test
    return order[:train], order[train:train + dev], order[train + dev:]


def runs_before(data: PacerData) -> torch.Tensor:
    """For each position, how many positions right before it (same sequence) were all accepted."""
    accepted = data.accepted.tolist()
    seq = data.sequence.tolist()
    out = [0] * len(accepted)
    for j in range(1, len(accepted)):
        if seq[j] == seq[j - 1] and accepted[j - 1]:
            out[j] = out[j - 1] + 1
    return torch.tensor(out, dtype=torch.long)


def token_examples(data: PacerData, max_draft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(position index, round position) of every uncensored example of rounds starting anywhere."""
    reach = runs_before(data).clamp(max=max_draft - 1) + 1  # round positions 0..run at which j is reached
    index = torch.repeat_interleave(torch.arange(len(data)), reach)
    offsets = torch.cat([torch.arange(int(r)) for r in reach]) if len(data) else index
    return index, offsets


def round_starts(data: PacerData, max_draft: int, *, censor: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(start index, length) of the round starting at every position; censored after the first rejection."""
    accepted = data.accepted.tolist()
    seq = data.sequence.tolist()
    n = len(seq)
    end_of_seq = [0] * n
    for j in range(n - 1, -1, -1):
        end_of_seq[j] = j + 1 if j == n - 1 or seq[j + 1] != seq[j] else end_of_seq[j + 1]
    first_reject = [0] * n  # first rejected position at or after j, within the sequence
    for j in range(n - 1, -1, -1):
        if not accepted[j]:
            first_reject[j] = j
        else:
            first_reject[j] = end_of_seq[j] if j + 1 >= end_of_seq[j] else first_reject[j + 1]
    starts, lengths = [], []
    for s in range(n):
        stop = min(first_reject[s] + 1, end_of_seq[s]) if censor else end_of_seq[s]
        starts.append(s)
        lengths.append(min(stop - s, max_draft))
    return torch.tensor(starts, dtype=torch.long), torch.tensor(lengths, dtype=torch.long)


# ---------------------------------------------------------------------------- the network on data
class Inputs:
    """Feeds batches of positions (or rounds of positions) to a network in float32."""

    def __init__(self, data: PacerData, embedding: torch.Tensor | None) -> None:
        self.data = data
        self.embedding = embedding

    def logits(self, net: PreVerifier, coder: nn.Module | None, index: torch.Tensor, positions: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        d = self.data
        codes = None
        if coder is not None:
            codes = coder(self.embedding[d.draft_token[index]].float())
        return net(d.hidden[index].float(), d.scalars[index], positions, d.draft_token[index], mask=mask, token_codes=codes)


def _round_batch(starts: torch.Tensor, lengths: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    offsets = torch.arange(width)
    mask = offsets[None, :] < lengths[:, None]
    index = (starts[:, None] + offsets[None, :]).where(mask, starts[:, None])
    return index, offsets.expand_as(index), mask


def predict_rounds(net: PreVerifier, inputs: Inputs, coder: nn.Module | None, max_draft: int,
                   batch_size: int = 4096) -> torch.Tensor:
    """log P(accept) of position s+i in the round starting at s, for every s and i < max_draft.

    Uncensored (the simulation needs scores beyond a rejection); -inf-padded past a sequence's end.
    """
    data = inputs.data
    starts, lengths = round_starts(data, max_draft, censor=False)
    out = torch.full((len(data), max_draft), -math.inf)
    net.eval()
    with torch.no_grad():
        if net.config.arch == "mlp":
            for i in range(max_draft):
                rows = torch.nonzero(lengths > i).flatten()
                for chunk in rows.split(batch_size):
                    positions = torch.full_like(chunk, i)
                    out[chunk, i] = nn.functional.logsigmoid(inputs.logits(net, coder, chunk + i, positions))
        else:
            for chunk in torch.arange(len(data)).split(max(1, batch_size // max_draft)):
                index, positions, mask = _round_batch(starts[chunk], lengths[chunk], max_draft)
                scores = nn.functional.logsigmoid(inputs.logits(net, coder, index, positions, mask))
                out[chunk] = scores.where(mask, torch.tensor(-math.inf))
    return out


def train_network(
    data: PacerData, train_ids: Sequence[int], dev_ids: Sequence[int], config: PacerConfig, settings: TrainSettings,
    *, embedding: torch.Tensor | None = None, progress: bool = True,
) -> tuple[PreVerifier, dict[str, Any]]:
    """Fit on the train sequences with BCE on censored labels; keep the epoch with the best dev loss."""
    from tqdm.auto import tqdm

    torch.manual_seed(settings.seed)
    train, dev = data.select(train_ids), data.select(dev_ids)
    net = PreVerifier(config)
    net.set_scalar_stats(train.scalars)
    coder = nn.Linear(config.hidden_size, config.embedding_rank, bias=False) if config.embedding_rank else None
    if config.embedding_rank and embedding is None:
        raise ValueError("embedding_rank > 0 needs the draft's embedding matrix")
    params = list(net.parameters()) + (list(coder.parameters()) if coder is not None else [])
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    batches_of = _example_batches(train, settings, config.arch)
    steps = settings.epochs * len(batches_of(random.Random(0)))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
    )
    train_inputs, dev_inputs = Inputs(train, embedding), Inputs(dev, embedding)
    rng = random.Random(settings.seed)
    best: tuple[float, dict[str, torch.Tensor], dict[str, torch.Tensor] | None] | None = None
    history = []
    bar = tqdm(total=steps, desc="training pre-verifier", unit="step", disable=not progress)
    for epoch in range(settings.epochs):
        net.train()
        for index, positions, mask, labels in batches_of(rng):
            logits = train_inputs.logits(net, coder, index, positions, mask)
            loss = _bce(logits, labels, mask, settings.reject_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
        dev_loss = evaluate_loss(net, coder, dev_inputs, settings, config.arch)
        history.append(round(dev_loss, 5))
        bar.set_postfix(dev_loss=f"{dev_loss:.4f}")
        if best is None or dev_loss < best[0]:
            best = (dev_loss, {k: v.clone() for k, v in net.state_dict().items()},
                    {k: v.clone() for k, v in coder.state_dict().items()} if coder is not None else None)
    bar.close()
    assert best is not None
    net.load_state_dict(best[1])
    if coder is not None and best[2] is not None:
        coder.load_state_dict(best[2])
        with torch.no_grad():
            net.token_table.copy_(coder(embedding.float()))
    return net.eval(), {"dev_loss_by_epoch": history, "best_dev_loss": round(best[0], 5)}


def _bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, reject_weight: float) -> torch.Tensor:
    weights = torch.where(labels > 0.5, 1.0, reject_weight)
    if mask is not None:
        weights = weights * mask
    losses = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (losses * weights).sum() / weights.sum().clamp(min=1e-9)


def _example_batches(data: PacerData, settings: TrainSettings, arch: str) -> Callable[[random.Random], list]:
    """A function giving one epoch of shuffled batches: (index, positions, mask, labels)."""
    labels = data.accepted.float()
    if arch == "mlp":
        index, positions = token_examples(data, settings.max_draft)

        def epoch(rng: random.Random) -> list:
            order = list(range(len(index)))
            rng.shuffle(order)
            chunks = torch.tensor(order, dtype=torch.long).split(settings.batch_size)
            return [(index[c], positions[c], None, labels[index[c]]) for c in chunks]

        return epoch
    starts, lengths = round_starts(data, settings.max_draft)

    def rounds(rng: random.Random) -> list:
        order = list(range(len(starts)))
        rng.shuffle(order)
        size = max(1, settings.batch_size // 4)
        out = []
        for c in torch.tensor(order, dtype=torch.long).split(size):
            width = int(lengths[c].max())
            index, positions, mask = _round_batch(starts[c], lengths[c], width)
            out.append((index, positions, mask, labels[index]))
        return out

    return rounds


def evaluate_loss(net: PreVerifier, coder: nn.Module | None, inputs: Inputs, settings: TrainSettings, arch: str) -> float:
    net.eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for index, positions, mask, labels in _example_batches(inputs.data, settings, arch)(random.Random(0)):
            logits = inputs.logits(net, coder, index, positions, mask)
            count = float(mask.sum()) if mask is not None else float(len(labels))
            total += float(_bce(logits, labels, mask, 1.0)) * count
            weight += count
    return total / max(weight, 1.0)
