"""Choosing the pre-verifier's block size and threshold for speed, and `fit`, the whole recipe.

Block size and threshold are chosen for tokens per second, not accuracy: a simulation walks
the dev sequences round by round with the trained scores, the measured draft-step and target
forward costs (per verification width) and the measured pre-verifier time, the way the decoding
loop would (greedy; the features after a rejection are the teacher-forced ones, an approximation).
`fit` splits the data, trains the network (`train.py`), tunes on dev and reports held-out metrics
(AUC and accuracy per token and per block, simulated speed) on the test sequences.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import attrs
import torch

from .collect import PacerData
from .network import PacerConfig, PreVerifier
from .train import Inputs, TrainSettings, predict_rounds, round_starts, split_sequences, token_examples, train_network


@attrs.frozen
class TrainResult:
    network: PreVerifier
    metrics: dict[str, Any]
    simulation: dict[str, Any]


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
    dev_table = predict_rounds(net, Inputs(dev, embedding), None, settings.max_draft)
    test_table = predict_rounds(net, Inputs(test, embedding), None, settings.max_draft)
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
