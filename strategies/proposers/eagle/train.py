"""Training a head on cached target states, and its held-out acceptance.

The losses are EAGLE's (arXiv 2401.15077): at head slot t (the token at t + 1 with the target's
state at t) the head's output should be the target's state at t + 1 (a smooth-L1 regression, for
EAGLE-1 whose output is scored by the target's own LM head) and its distribution the target's
next-token distribution there (cross-entropy against the target's LM-head scores of that state,
over the draft vocabulary). Only slots predicting answer tokens count; the prompt is context.
The target's states get a little uniform noise in training, as EAGLE does, so the head tolerates
its own imperfect outputs when it drafts on from them.

Held-out acceptance is measured on the held-out greedy answers by drafting: at every answer
position the head catches up on the target's states so far, then drafts a chain of `depth` tokens
from its own outputs, greedily, exactly as the proposer does; a token counts as accepted while it
equals the target's token. Reported: the first token's agreement, the acceptance at each chain
position given the ones before, and the mean tokens per round with chains of `depth` (accepted + 1).
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, Callable, Sequence

import attrs
import torch
import torch.nn.functional as F

from .config import HeadConfig, default_layers
from .features import FeatureStore
from .network import EagleHead, HeadCache


@attrs.frozen
class TrainSettings:
    """What `fit` trains: the head's design and size, and the optimisation."""

    style: str = "eagle1"
    draft_vocab: int = 8192  # tokens the head scores (the most frequent in the training answers); 0: all
    intermediate_size: int = 0  # 0: the target's
    epochs: int = 2
    lr: float = 1e-3
    batch_tokens: int = 2048  # slots per optimisation step (whole sequences, padded)
    regression_weight: float = 1.0  # EAGLE-1's feature loss (EAGLE-3 heads have none)
    ce_weight: float = 0.1
    noise: float = 0.1  # uniform noise on the target's states, scaled by their mean absolute value
    held_out: float = 0.1  # share of prompts held out
    depth: int = 4  # chain length of the held-out acceptance
    eval_sequences: int = 40  # held-out greedy answers measured (at most)
    seed: int = 0


def draft_vocabulary(store: FeatureStore, vocab_size: int, count: int, always: Sequence[int] = ()) -> torch.Tensor:
    """The `count` tokens most frequent in the answers (then the lowest ids), plus `always`, ascending."""
    if not count or count >= vocab_size:
        return torch.arange(vocab_size)
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for s in range(len(store)):
        rows = store.sequence(s)
        answer = store.tokens[rows][int(store.answer_starts[s]):]
        counts.index_add_(0, answer, torch.ones(len(answer), dtype=torch.float64))
    counts -= torch.arange(vocab_size, dtype=torch.float64) * 1e-9  # ties: lower ids first
    chosen = set(torch.topk(counts, count).indices.tolist()) | set(int(t) for t in always)
    while len(chosen) > count:  # make room for `always` by dropping the least frequent
        chosen.remove(min((t for t in chosen if t not in set(always)), key=lambda t: counts[t]))
    return torch.tensor(sorted(chosen))


def head_for(target: Any, settings: TrainSettings, draft_ids: torch.Tensor, layers: tuple[int, ...]) -> EagleHead:
    """A fresh head shaped like one of the target's layers."""
    config = target.model.config
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or target.hidden_size // heads)
    theta = float((getattr(config, "rope_parameters", None) or {}).get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    head = EagleHead(HeadConfig(
        style=settings.style, hidden_size=target.hidden_size,
        intermediate_size=settings.intermediate_size or int(config.intermediate_size), num_heads=heads,
        num_kv_heads=int(getattr(config, "num_key_value_heads", None) or heads), vocab_size=target.vocab_size,
        draft_vocab_size=len(draft_ids), target_hidden_size=target.hidden_size, head_dim=head_dim,
        rms_norm_eps=float(getattr(config, "rms_norm_eps", 1e-5)), rope_theta=theta, layers=layers,
        own_head=settings.style == "eagle3",
    ))
    generator = torch.Generator().manual_seed(settings.seed)
    for name, parameter in head.named_parameters():
        if parameter.dim() == 2:
            torch.nn.init.normal_(parameter, std=0.02, generator=generator)
    if len(draft_ids) < target.vocab_size:
        head.set_draft_vocabulary(draft_ids)
    if settings.style == "eagle3":  # start from the target's own LM head rows: a head that already reads states
        with torch.no_grad():
            head.lm_head.weight.copy_(target.output_embedding()[draft_ids])
    return head.attach(target.input_embedding(), None if settings.style == "eagle3" else target.output_embedding())


def split(store: FeatureStore, prompt_of: Sequence[int], held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """Sequences for training and held out, split by prompt (all answers to a prompt on one side)."""
    prompts = sorted(set(prompt_of))
    random.Random(seed).shuffle(prompts)
    count = max(1, round(held_out * len(prompts))) if held_out > 0 and len(prompts) > 1 else 0
    kept = set(prompts[:count])
    return [s for s in range(len(store)) if prompt_of[s] not in kept], [s for s in range(len(store)) if prompt_of[s] in kept]


class _Batch:
    """Right-padded sequences of the store as head inputs and targets."""

    def __init__(self, store: FeatureStore, sequences: Sequence[int], head: EagleHead, final: int) -> None:
        lengths = [int(store.offsets[s + 1] - store.offsets[s]) - 1 for s in sequences]  # slots per sequence
        width = max(lengths)
        n, hidden = len(sequences), head.config.target_hidden_size
        self.tokens = torch.zeros(n, width, dtype=torch.long)
        self.inputs = [torch.zeros(n, width, hidden) for _ in head.config.layers]
        self.next_state = torch.zeros(n, width, hidden)
        self.mask = torch.zeros(n, width, dtype=torch.bool)
        for row, (s, length) in enumerate(zip(sequences, lengths)):
            rows = store.sequence(s)
            ids = store.tokens[rows]
            self.tokens[row, :length] = ids[1:]
            for i, layer in enumerate(head.config.layers):
                self.inputs[i][row, :length] = store.layers[layer][rows][:-1].float()
            self.next_state[row, :length] = store.layers[final][rows][1:].float()
            start = int(store.answer_starts[s])
            # slot t predicts the target's state at t + 1 and its distribution of the token at t + 2
            self.mask[row, max(start - 2, 0) : length] = True


def _losses(head: EagleHead, batch: _Batch, settings: TrainSettings, target_rows: torch.Tensor, noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    layers = batch.inputs
    if noise and settings.noise > 0:
        layers = [x + (torch.rand_like(x) * 2 - 1) * settings.noise * x.abs().mean() for x in layers]
    out = head(batch.tokens, head.fuse(layers))
    predicted, wanted = out[batch.mask], batch.next_state[batch.mask]
    regression = F.smooth_l1_loss(predicted, wanted) if settings.style == "eagle1" else out.new_zeros(())
    with torch.no_grad():
        goal = torch.log_softmax(F.linear(wanted, target_rows), dim=-1).exp()
    cross_entropy = -(goal * torch.log_softmax(head.scores(predicted), dim=-1)).sum(-1).mean()
    return regression, cross_entropy


def batches(store: FeatureStore, sequences: Sequence[int], batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """Sequences grouped by length into batches of about `batch_tokens` padded slots."""
    order = sorted(sequences, key=lambda s: int(store.offsets[s + 1] - store.offsets[s]) + rng.random())
    groups, current, width = [], [], 0
    for s in order:
        length = int(store.offsets[s + 1] - store.offsets[s])
        if current and max(width, length) * (len(current) + 1) > batch_tokens:
            groups.append(current)
            current, width = [], 0
        current.append(s)
        width = max(width, length)
    if current:
        groups.append(current)
    rng.shuffle(groups)
    return groups


def train_head(head: EagleHead, store: FeatureStore, sequences: Sequence[int], settings: TrainSettings, final: int,
               target_rows: torch.Tensor, *, advance: Callable[[int], None] = lambda n: None) -> list[dict[str, float]]:
    """Train in place with AdamW and a cosine schedule; returns each epoch's mean losses.
    `target_rows`: the target's LM-head rows of the draft vocabulary, whose scores of the target's
    final state are the distributions the head learns."""
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    plan = [batches(store, sequences, settings.batch_tokens, rng) for _ in range(settings.epochs)]
    steps = sum(len(p) for p in plan)
    trained = [p for p in head.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trained, lr=settings.lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))
    )
    target_rows = target_rows.detach().float()
    history = []
    head.train()
    for epoch in plan:
        totals = [0.0, 0.0]
        for group in epoch:
            regression, cross_entropy = _losses(head, _Batch(store, group, head, final), settings, target_rows, noise=True)
            loss = settings.regression_weight * regression + settings.ce_weight * cross_entropy
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimiser.step()
            schedule.step()
            totals[0] += float(regression.detach())
            totals[1] += float(cross_entropy.detach())
            advance(1)
        history.append({"regression": totals[0] / max(len(epoch), 1), "cross_entropy": totals[1] / max(len(epoch), 1)})
    head.eval()
    return history


def chain_acceptance(head: EagleHead, store: FeatureStore, sequences: Sequence[int], depth: int, *,
                     advance: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Greedy chains of `depth` drafted at every answer position of `sequences` (see the module docstring)."""
    accepted_at = [0] * depth  # chains whose first i + 1 tokens were all accepted
    chains = 0
    with torch.inference_mode():
        for s in sequences:
            rows = store.sequence(s)
            ids = store.tokens[rows].tolist()
            start = int(store.answer_starts[s])
            states = [store.layers[layer][rows].float() for layer in head.config.layers]
            cache = HeadCache()
            fused = head.fuse(states)
            # slots 0..start-3 read the prompt: one forward; then one real slot per position
            if start > 2:
                head(torch.tensor([ids[1 : start - 1]]), fused[None, : start - 2], cache)
            for t in range(max(start - 2, 0), len(ids) - 2):  # slot t drafts the token at t + 2
                out = head(torch.tensor([[ids[t + 1]]]), fused[None, t : t + 1], cache)
                base = cache.length
                run = 0
                for i in range(depth):
                    token = int(head.logits(out[0])[0].argmax())
                    if t + 2 + i >= len(ids) or token != ids[t + 2 + i]:
                        break
                    run += 1
                    accepted_at[i] += 1
                    if i + 1 < depth:
                        out = head(torch.tensor([[token]]), out, cache)
                cache.crop(base)
                chains += 1
            advance(1)
    rates = [accepted_at[i] / (accepted_at[i - 1] if i else chains) if (accepted_at[i - 1] if i else chains) else 0.0
             for i in range(depth)]
    return {
        "chains": chains,
        "first_token_agreement": accepted_at[0] / chains if chains else 0.0,
        "acceptance_by_position": rates,
        "mean_accepted_length": 1.0 + sum(accepted_at) / chains if chains else 1.0,
        "depth": depth,
    }


@attrs.frozen
class FitResult:
    head: EagleHead = attrs.field(eq=False)
    report: dict[str, Any] = attrs.field(eq=False)


def fit(target: Any, store: FeatureStore, prompt_of: Sequence[int], settings: TrainSettings, *,
        progress: Callable[[str, int], Any] | None = None) -> FitResult:
    """The whole recipe: draft vocabulary, split, training, held-out acceptance.

    `progress(what, total)` returns a context manager whose value has `advance(n)` (specdec's
    `reporting`), or None for no reports."""
    began = time.perf_counter()
    final = target.num_layers
    layers = default_layers(settings.style, final)
    missing = [layer for layer in (*layers, final) if layer not in store.layers]
    if missing:
        raise ValueError(f"the cached states lack layers {missing}")
    draft_ids = draft_vocabulary(store, target.vocab_size, settings.draft_vocab, sorted(target.eos_token_ids))
    head = head_for(target, settings, draft_ids, layers)
    train, held = split(store, prompt_of, settings.held_out, settings.seed)
    held_greedy = [s for s in held if bool(store.greedy[s])][: settings.eval_sequences]
    steps = sum(len(batches(store, train, settings.batch_tokens, random.Random(settings.seed))) for _ in range(settings.epochs))
    with _progress(progress, f"training the EAGLE head ({len(train)} sequences, {settings.epochs} epochs)", steps) as bar:
        history = train_head(head, store, train, settings, final, target.output_embedding()[draft_ids], advance=bar.advance)
    with _progress(progress, f"measuring held-out acceptance ({len(held_greedy)} greedy answers)", len(held_greedy)) as bar:
        held_out = chain_acceptance(head, store, held_greedy, settings.depth, advance=bar.advance)
    coverage = _coverage(store, train, draft_ids)
    report = {
        "settings": attrs.asdict(settings), "layers": list(layers), "draft_vocab_size": len(draft_ids),
        "draft_vocab_coverage": coverage, "sequences": {"train": len(train), "held_out": len(held), "measured": len(held_greedy)},
        "train_tokens": int(sum(int(store.offsets[s + 1] - store.offsets[s]) for s in train)),
        "history": history, "held_out": held_out, "train_seconds": round(time.perf_counter() - began, 1),
    }
    return FitResult(head, report)


def _coverage(store: FeatureStore, sequences: Sequence[int], draft_ids: torch.Tensor) -> float:
    """Share of the answer tokens the draft vocabulary holds."""
    kept = torch.zeros(int(store.tokens.max()) + 1 if store.tokens.numel() else 1, dtype=torch.bool)
    kept[draft_ids[draft_ids < len(kept)]] = True
    total = inside = 0
    for s in sequences:
        answer = store.tokens[store.sequence(s)][int(store.answer_starts[s]):]
        total += len(answer)
        inside += int(kept[answer].sum())
    return inside / total if total else 1.0


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _progress(progress, what: str, total: int):
    return _Silent() if progress is None else progress(what, total)
