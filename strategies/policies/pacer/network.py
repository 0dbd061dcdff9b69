"""The PACER pre-verifier network, its configuration, and how it is saved.

The network predicts, for each drafted token, the probability that the target accepts it given
that every earlier token of the round was accepted (a hazard, the quantity the censored labels
measure). A block's score is the product of its tokens' hazards: P(block accepted | earlier
blocks accepted). Inputs per token are the draft's final hidden state, cheap scalars of the draft
distribution, the position in the round and, optionally, a low-rank code of the drafted token's
embedding (stored as a vocabulary-sized table so that inference never touches the draft's weights).

A checkpoint is a directory with `config.json` and `model.safetensors`; the config records which
draft the network was trained for (name and fingerprint, `drafts.py`), so that it is not silently
used with a draft whose hidden states mean something else.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from specdec.errors import ConfigurationError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "specdec-pacer/1"
# scalar features of a drafted token, in this order (see `scalar_features`)
SCALARS = ("log_prob", "entropy", "margin", "top_prob")
LOG_PROB_FLOOR = -30.0


def scalar_features(prob: float, entropy: float, margin: float, top_prob: float) -> list[float]:
    """The scalar inputs of one token; shared by training and inference so they cannot drift."""
    return [max(math.log(prob), LOG_PROB_FLOOR) if prob > 0 else LOG_PROB_FLOOR, entropy, margin, top_prob]


@attrs.frozen
class PacerConfig:
    """Architecture, decision defaults and provenance of a pre-verifier."""

    hidden_size: int  # the draft's hidden size
    width: int = 32  # d: the projection width
    hidden_rank: int = 8  # the hidden state enters through a rank-r factor (0 = not at all; see PreVerifier)
    arch: Literal["mlp", "attention"] = "mlp"
    heads: int = 4  # attention arch only
    positions: int = 24  # learned position rows; later positions share the last one
    embedding_rank: int = 0  # 0 = the drafted token's embedding is not an input
    vocab_size: int = 0  # rows of the token table when embedding_rank > 0
    block_size: int = 2
    threshold: float = 0.5
    max_draft: int = 24
    draft_name: str = ""
    draft_fingerprint: str = ""  # "" = not tied to a draft (tests, toy models)
    training: dict[str, Any] = attrs.field(factory=dict, eq=False)  # metrics and settings, for the record

    def __attrs_post_init__(self) -> None:
        for name in ("hidden_size", "width", "heads", "positions", "block_size", "max_draft"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"pre-verifier config: {name} must be an integer >= 1, got {value!r}")
        if self.arch not in ("mlp", "attention"):
            raise ConfigurationError(f"pre-verifier config: arch must be 'mlp' or 'attention', got {self.arch!r}")
        if self.arch == "attention" and self.width % self.heads:
            raise ConfigurationError(f"pre-verifier config: width {self.width} is not a multiple of heads {self.heads}")
        if self.hidden_rank < 0:
            raise ConfigurationError(f"pre-verifier config: hidden_rank must be >= 0, got {self.hidden_rank!r}")
        if self.embedding_rank < 0 or (self.embedding_rank > 0 and self.vocab_size < 1):
            raise ConfigurationError("pre-verifier config: an embedding_rank > 0 needs vocab_size")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigurationError(f"pre-verifier config: threshold must be in [0, 1], got {self.threshold!r}")

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **attrs.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PacerConfig":
        if data.get("format") != FORMAT:
            raise ConfigurationError(f"not a PACER pre-verifier config (format {data.get('format')!r}, expected {FORMAT!r})")
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class PreVerifier(nn.Module):
    """Per-token acceptance hazards from draft features (see the module docstring)."""

    def __init__(self, config: PacerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.width
        self.norm = nn.LayerNorm(config.hidden_size, elementwise_affine=False)
        # standardisation of the scalars, fitted on the training data (buffers: saved, not trained)
        self.register_buffer("scalar_mean", torch.zeros(len(SCALARS)))
        self.register_buffer("scalar_std", torch.ones(len(SCALARS)))
        # The projection's hidden-state block is factored through rank r: on ~25k training positions a
        # full hidden_size x d block overfits (dev loss rises after one epoch, AUC below the scalars').
        if config.hidden_rank:
            self.hidden_factor = nn.Linear(config.hidden_size, config.hidden_rank, bias=False)
        self.project = nn.Linear(config.hidden_rank + len(SCALARS), d)
        self.position = nn.Embedding(config.positions, d)
        if config.embedding_rank:
            # training fills this from the draft's embedding times a learned matrix (see `set_token_table`)
            self.register_buffer("token_table", torch.zeros(config.vocab_size, config.embedding_rank))
            self.token_project = nn.Linear(config.embedding_rank, d, bias=False)
        if config.arch == "attention":
            self.attn_norm = nn.LayerNorm(d)
            self.attn = nn.MultiheadAttention(d, config.heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 1))

    def embed(self, hidden: torch.Tensor, scalars: torch.Tensor, positions: torch.Tensor,
              tokens: torch.Tensor | None = None, token_codes: torch.Tensor | None = None) -> torch.Tensor:
        """Token representations [..., d]; `token_codes` replaces the table lookup during training."""
        scalars = (scalars - self.scalar_mean) / self.scalar_std
        if self.config.hidden_rank:
            scalars = torch.cat([self.hidden_factor(self.norm(hidden)), scalars], dim=-1)
        x = self.project(scalars)
        x = x + self.position(positions.clamp(max=self.config.positions - 1))
        if self.config.embedding_rank:
            codes = token_codes if token_codes is not None else self.token_table[tokens]
            x = x + self.token_project(codes)
        return x

    def forward(self, hidden: torch.Tensor, scalars: torch.Tensor, positions: torch.Tensor,
                tokens: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                token_codes: torch.Tensor | None = None) -> torch.Tensor:
        """Acceptance logits, one per token.

        MLP: inputs of any leading shape. Attention: [rounds, length, ...] with the tokens of a
        round in order (each attends to itself and the earlier ones); `mask` [rounds, length] marks
        real tokens (True) in padded batches.
        """
        x = self.embed(hidden, scalars, positions, tokens, token_codes)
        if self.config.arch == "attention":
            squeeze = x.dim() == 2
            if squeeze:
                x = x.unsqueeze(0)
            length = x.shape[1]
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            pad = None if mask is None else ~mask
            h = self.attn_norm(x)
            a, _ = self.attn(h, h, h, attn_mask=causal, key_padding_mask=pad, need_weights=False)
            x = x + a
            if squeeze:
                x = x.squeeze(0)
        x = x + self.mlp(x)
        return self.head(x).squeeze(-1)

    def token_scorer(self) -> "TokenScorer | None":
        """A one-token evaluator of this network with its linear maps folded together; None for
        the attention architecture (it reads the whole round) or a subclass with its own forward."""
        if self.config.arch != "mlp" or type(self).forward is not PreVerifier.forward:
            return None
        return TokenScorer(self)

    def set_scalar_stats(self, scalars: torch.Tensor) -> None:
        self.scalar_mean.copy_(scalars.mean(0))
        self.scalar_std.copy_(scalars.std(0).clamp(min=1e-3))

    @classmethod
    def random(cls, config: PacerConfig, seed: int = 0) -> "PreVerifier":
        """A randomly initialised network (tests; the start of training)."""
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            net = cls(config)
            if config.embedding_rank:
                net.token_table.normal_()
        finally:
            torch.random.set_rng_state(generator_state)
        return net.eval()

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path, *, config: PacerConfig | None = None) -> Path:
        """Write `config.json` + `model.safetensors` (weights as float32) into directory `path`."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        config = config or self.config
        tensors = {k: v.detach().float().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT})
        (out / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "PreVerifier":
        """Load a directory written by `save_pretrained` (safetensors only: no pickle is ever read)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(path)
        if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise ConfigurationError(
                f"{str(folder)!r} is not a PACER pre-verifier directory (it needs {CONFIG_FILE} and {WEIGHTS_FILE}; "
                "make one with `specdec train-pacer`)"
            )
        try:
            config = PacerConfig.from_json(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as error:
            raise ConfigurationError(f"cannot read {folder / CONFIG_FILE}: {error}") from None
        net = cls(config)
        try:
            state = load_file(str(folder / WEIGHTS_FILE))
        except (SafetensorError, OSError) as error:
            raise ConfigurationError(
                f"cannot read {folder / WEIGHTS_FILE} ({error}): the file is damaged; train the pre-verifier again "
                "(`specdec train-pacer`) or copy it again"
            ) from None
        try:
            net.load_state_dict(state)
        except RuntimeError as error:
            raise ConfigurationError(f"{folder / WEIGHTS_FILE} does not match its config: {error}") from None
        return net.eval()


class TokenScorer:
    """The MLP pre-verifier's log-hazard for one token, in a dozen small tensor operations.

    The network runs once per drafted token, between two draft steps of a few milliseconds, so its
    fixed per-call cost is the policy's overhead. An MLP scores tokens independently, and its
    input layers are linear in the normalised hidden state and the scalars, so they fold into one
    matrix-vector product: W (F n(h)) + P ((s - mean) / std) + b = (W F) n(h) + (P / std) s + b',
    computed here once. Equal to `PreVerifier.forward` up to float rounding (tested).
    """

    def __init__(self, net: PreVerifier) -> None:
        config = net.config
        if config.arch != "mlp":
            raise ValueError("only an MLP pre-verifier scores tokens independently")
        with torch.no_grad():
            weight, bias = net.project.weight.detach(), net.project.bias.detach()
            rank = config.hidden_rank
            scalar_weight = weight[:, rank:] / net.scalar_std
            self.scalar_weight = scalar_weight.contiguous()
            self.bias = bias - scalar_weight @ net.scalar_mean
            self.hidden_weight = (weight[:, :rank] @ net.hidden_factor.weight).contiguous() if rank else None
            self.norm_eps = net.norm.eps
            self.positions = net.position.weight.detach()
            self.token_weight = None
            if config.embedding_rank:
                self.token_weight = net.token_table @ net.token_project.weight.detach().T  # [vocab, d]
            self.mlp = [m for m in net.mlp]
            self.head = [m for m in net.head]
        self.last_position = config.positions - 1

    def log_hazard(self, hidden: torch.Tensor | None, scalars: list[float], position: int, token: int) -> float:
        """log P(accepted | earlier tokens of the round accepted) for one drafted token."""
        with torch.inference_mode():
            x = torch.addmv(self.bias, self.scalar_weight, torch.tensor(scalars))
            if self.hidden_weight is not None:
                normed = F.layer_norm(hidden.float(), hidden.shape[-1:], eps=self.norm_eps)
                x = torch.addmv(x, self.hidden_weight, normed)
            x = x + self.positions[min(position, self.last_position)]
            if self.token_weight is not None:
                x = x + self.token_weight[token]
            norm, up, act, down = self.mlp
            h = F.layer_norm(x, x.shape, norm.weight, norm.bias, norm.eps)
            x = x + torch.addmv(down.bias, down.weight, act(torch.addmv(up.bias, up.weight, h)))
            norm, out = self.head
            h = F.layer_norm(x, x.shape, norm.weight, norm.bias, norm.eps)
            logit = float(torch.dot(out.weight[0], h)) + float(out.bias[0])
        return -math.log1p(math.exp(-logit)) if logit > -30.0 else logit
