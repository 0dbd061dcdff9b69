"""Training the pre-verifier on collected data, and choosing its decision settings for speed.

Rounds are rebuilt from per-position greedy outcomes: a round starting at position s drafts
s, s+1, ...; the label of position s+i is `accepted[s+i]`, and positions after the first rejection
are censored (dropped): the network learns the hazard P(token accepted | earlier ones accepted),
exactly what a block score multiplies. Every start position is used, so a token preceded by r
accepted tokens appears at round positions 0..r.

Block size and threshold are then chosen for tokens per second, not accuracy: a simulation walks
the dev sequences round by round with the trained scores, the measured draft-step and target
forward costs (per verification width) and the measured pre-verifier time, the way the decoding
loop would (greedy; the features after a rejection are the teacher-forced ones, an approximation).
"""

from __future__ import annotations

import math
import random
import time
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


@attrs.frozen
class TrainResult:
    network: PreVerifier
    metrics: dict[str, Any]
    simulation: dict[str, Any]


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
class _Inputs:
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


def predict_rounds(net: PreVerifier, inputs: _Inputs, coder: nn.Module | None, max_draft: int,
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
    train_inputs, dev_inputs = _Inputs(train, embedding), _Inputs(dev, embedding)
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


def evaluate_loss(net: PreVerifier, coder: nn.Module | None, inputs: _Inputs, settings: TrainSettings, arch: str) -> float:
    net.eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for index, positions, mask, labels in _example_batches(inputs.data, settings, arch)(random.Random(0)):
            logits = inputs.logits(net, coder, index, positions, mask)
            count = float(mask.sum()) if mask is not None else float(len(labels))
            total += float(_bce(logits, labels, mask, 1.0)) * count
            weight += count
    return total / max(weight, 1.0)


# ---------------------------------------------------------------------------- metrics
def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    labels = labels.bool()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    values, inverse = torch.unique(scores, return_inverse=True)
    order = torch.argsort(scores, stable=True)
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    sums = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(ranks))
    average = (sums / counts)[inverse]
    u = float(average[labels].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def token_metrics(table: torch.Tensor, data: PacerData, max_draft: int) -> dict[str, float]:
    """AUC and accuracy (at 0.5) of per-token acceptance over the censored examples of `data`."""
    index, positions = token_examples(data, max_draft)
    starts = index - positions
    scores = table[starts, positions].exp()
    labels = data.accepted[index]
    return {
        "auc": round(auc(scores, labels), 4),
        "accuracy": round(float(((scores >= 0.5) == labels).float().mean()), 4),
        "acceptance_rate": round(float(labels.float().mean()), 4),
        "examples": int(len(index)),
    }


def block_metrics(table: torch.Tensor, data: PacerData, block: int, threshold: float, max_draft: int) -> dict[str, float]:
    """Block-level AUC/accuracy: score = product of the block's hazards, label = all accepted.

    Blocks are taken from rounds starting everywhere, censored at the first rejected block.
    """
    starts, lengths = round_starts(data, max_draft, censor=False)
    accepted = data.accepted
    scores, labels = [], []
    seq_end = lengths.tolist()
    acc = accepted.tolist()
    table_list = table.tolist()
    for s in range(len(data)):
        for first in range(0, min(seq_end[s], max_draft) - block + 1, block):
            scores.append(sum(table_list[s][first:first + block]))
            ok = all(acc[s + first:s + first + block])
            labels.append(ok)
            if not ok:
                break
    if not scores:
        return {"auc": float("nan"), "accuracy": float("nan"), "blocks": 0}
    s_t, l_t = torch.tensor(scores).exp(), torch.tensor(labels)
    return {
        "auc": round(auc(s_t, l_t), 4),
        "accuracy": round(float(((s_t >= threshold) == l_t).float().mean()), 4),
        "blocks": len(scores),
    }


# ---------------------------------------------------------------------------- speed simulation
@attrs.frozen
class Costs:
    draft: float  # seconds per draft step
    target: tuple[float, ...]  # target[w - 1]: a forward over w tokens
    evaluation: float = 0.0  # seconds per block score (pre-verifier)

    def verify(self, width: int) -> float:
        return self.target[min(width, len(self.target)) - 1]


def simulate(data: PacerData, table: torch.Tensor | None, costs: Costs, *, block: int = 1, threshold: float = 0.5,
             fixed: int | None = None, max_draft: int = 24) -> dict[str, float]:
    """Greedy decoding of `data`'s sequences round by round; tokens/s from the measured costs.

    With `fixed`, every round drafts that many tokens (the baseline); otherwise the PACER rule.
    """
    acc = data.accepted.tolist()
    seq = data.sequence.tolist()
    scores = table.tolist() if table is not None else None
    seconds = tokens = rounds = drafted = accepted_total = 0.0
    n = len(seq)
    s = 0
    while s < n:
        end = s
        while end < n and seq[end] == seq[s]:
            end += 1
        while s < end:  # one sequence
            cap = min(max_draft if fixed is None else fixed, end - s)
            if fixed is not None:
                count, evaluations = cap, 0
            else:
                count, evaluations = _pacer_round(scores[s], cap, block, math.log(max(threshold, 1e-12)))
            run = 0
            while run < count and acc[s + run]:
                run += 1
            emitted = min(run + 1, end - s)
            seconds += count * costs.draft + costs.verify(count + 1) + evaluations * costs.evaluation
            tokens += emitted
            rounds += 1
            drafted += count
            accepted_total += run
            s += emitted
        s = end
    return {
        "tokens_per_second": tokens / seconds if seconds else 0.0,
        "speedup": (tokens / seconds) * costs.target[0] if seconds else 0.0,
        "mean_accepted": accepted_total / max(rounds, 1),
        "mean_drafted": drafted / max(rounds, 1),
        "target_forwards_per_token": rounds / max(tokens, 1),
    }


def _pacer_round(scores: list[float], cap: int, block: int, log_threshold: float) -> tuple[int, int]:
    """(tokens drafted, block scores computed) of one round under the PACER rule."""
    count = evaluations = 0
    total = 0.0
    while count < cap:
        total += scores[count]
        count += 1
        if count % block == 0:
            evaluations += 1
            if total < log_threshold:
                break
            total = 0.0
    return count, evaluations


def tune(data: PacerData, table: torch.Tensor, costs: Costs, settings: TrainSettings) -> dict[str, Any]:
    """The block size and threshold with the best simulated tokens/s, and the fixed-k baselines."""
    grid = []
    for block in settings.block_sizes:
        for threshold in settings.thresholds:
            result = simulate(data, table, costs, block=block, threshold=threshold, max_draft=settings.max_draft)
            grid.append({"block_size": block, "threshold": threshold, **_rounded(result)})
    best = max(grid, key=lambda r: r["tokens_per_second"])
    fixed = {k: _rounded(simulate(data, None, costs, fixed=k)) for k in range(1, 9)}
    best_k = max(fixed, key=lambda k: fixed[k]["tokens_per_second"])
    return {"best": best, "grid": grid, "fixed": fixed, "best_fixed_k": best_k}


def _rounded(result: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in result.items()}


def measure_evaluation_seconds(net: PreVerifier, block: int, vocab_size: int, repeats: int = 100) -> float:
    """Seconds per block through the policy's own code path: the lazy features of `block` tokens
    (a softmax over the vocabulary each), their bookkeeping in decide(), and one block score."""
    from specdec.features import token_features
    from .policy import PacerPolicy

    policy = PacerPolicy.from_verifier(net, block_size=block, threshold=0.0)
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(net.config.hidden_size, generator=generator)
    rows = torch.randn(block, vocab_size, generator=generator) * 3
    policy.start()
    start = time.perf_counter()
    for _ in range(repeats):
        for i in range(block):
            policy.decide(token_features(rows[i], int(rows[i].argmax()), i, hidden))
    return (time.perf_counter() - start) / repeats


def fit(data: PacerData, settings: TrainSettings, *, embedding: torch.Tensor | None = None,
        progress: bool = True, log: Callable[[str], None] = print) -> TrainResult:
    """Split, train, tune block size and threshold on dev for tokens/s, report held-out metrics."""
    meta = data.meta
    train_ids, dev_ids, test_ids = split_sequences(data.sequences, settings.seed, settings.split)
    if not train_ids or not dev_ids:
        raise ValueError(f"need at least 3 sequences to split into train/dev/test, got {data.sequences}")
    config = PacerConfig(
        hidden_size=int(data.hidden.shape[1]), width=settings.width, hidden_rank=settings.hidden_rank,
        arch=settings.arch,  # type: ignore[arg-type]
        embedding_rank=settings.embedding_rank, vocab_size=int(meta.get("vocab_size", 0)) if settings.embedding_rank else 0,
        max_draft=settings.max_draft, draft_name=str(meta.get("draft_name", "")),
        draft_fingerprint=str(meta.get("draft_fingerprint", "")),
    )
    started = time.perf_counter()
    net, history = train_network(data, train_ids, dev_ids, config, settings, embedding=embedding, progress=progress)
    train_seconds = time.perf_counter() - started
    dev, test = data.select(dev_ids), data.select(test_ids or dev_ids)
    dev_table = predict_rounds(net, _Inputs(dev, embedding), None, settings.max_draft)
    test_table = predict_rounds(net, _Inputs(test, embedding), None, settings.max_draft)
    raw = meta.get("costs") or {"draft": 0.3, "target": [1.0 + 0.05 * w for w in range(settings.max_draft + 1)]}
    vocab = int(meta.get("vocab_size") or 1000)
    per_block = {b: measure_evaluation_seconds(net, b, vocab) for b in settings.block_sizes}
    costs_by_block = {b: Costs(float(raw["draft"]), tuple(float(x) for x in raw["target"]), per_block[b]) for b in per_block}
    grid, best = [], None
    for block, costs in costs_by_block.items():
        tuned = tune(dev, dev_table, costs, attrs.evolve(settings, block_sizes=(block,)))
        grid += tuned["grid"]
        if best is None or tuned["best"]["tokens_per_second"] > best["best"]["tokens_per_second"]:
            best = tuned
    assert best is not None
    chosen = best["best"]
    block, threshold = int(chosen["block_size"]), float(chosen["threshold"])
    costs = costs_by_block[block]
    test_speed = _rounded(simulate(test, test_table, costs, block=block, threshold=threshold, max_draft=settings.max_draft))
    test_fixed = {k: _rounded(simulate(test, None, costs, fixed=k)) for k in range(1, 9)}
    best_k = max(test_fixed, key=lambda k: test_fixed[k]["tokens_per_second"])
    metrics = {
        "sequences": {"train": len(train_ids), "dev": len(dev_ids), "test": len(test_ids)},
        "positions": {"train": int(sum((data.sequence == i).sum() for i in train_ids)), "dev": len(dev), "test": len(test)},
        "test_token": token_metrics(test_table, test, settings.max_draft),
        "test_block": block_metrics(test_table, test, block, threshold, settings.max_draft),
        "dev_token": token_metrics(dev_table, dev, settings.max_draft),
        "train_seconds": round(train_seconds, 1),
        **history,
        "seconds_per_block_score": {b: round(v, 6) for b, v in per_block.items()},
        "costs": {"draft": raw["draft"], "target_1": raw["target"][0], "target_max": raw["target"][-1]},
    }
    simulation = {
        "dev_best": chosen, "dev_fixed": best["fixed"], "dev_best_fixed_k": best["best_fixed_k"],
        "test_pacer": test_speed, "test_fixed": test_fixed, "test_best_fixed_k": best_k, "grid": grid,
    }
    config = attrs.evolve(net.config, block_size=block, threshold=threshold, training={
        "settings": attrs.asdict(settings), "metrics": metrics,
        "simulated_test": {"pacer": test_speed, f"fixed_k{best_k}": test_fixed[best_k]},
        "data": {k: v for k, v in meta.items() if k != "costs"},
    })
    tuned_net = PreVerifier(config)
    tuned_net.load_state_dict(net.state_dict())
    return TrainResult(tuned_net.eval(), metrics, simulation)
