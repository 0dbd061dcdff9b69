"""Heads on disk: config.json + model.safetensors, in the published EAGLE and EAGLE-3 layouts.

specdec saves a head in the layout its design was published in, so one reader serves specdec's
heads and the published ones:

- EAGLE-1/2: `fc.weight` over [embedding; feature] (and `fc.bias`), `layers.0.self_attn.*`,
  `layers.0.mlp.*`, `layers.0.post_attention_layernorm.weight`, optionally `embed_tokens.weight`;
- EAGLE-3: `midlayer.*` (or `layers.0.*`, as some trainers write it) with `hidden_norm` and
  `input_layernorm`, `fc.weight` over the fused target layers, `norm.weight`, `lm_head.weight`
  over the draft vocabulary, `d2t` (target id = draft id + d2t[draft id]) and `t2d` (which
  target ids the draft scores), optionally `embed_tokens.weight`.

A specdec head also writes `d2t`/`t2d` for an EAGLE-1 head scoring rows of the target's LM head
(a trimmed vocabulary), and a `specdec` section in config.json: the head's `HeadConfig`, the
target it was trained for (name and fingerprint) and its training report. A published config
is read as the transformers-style config it is. PyTorch pickles are refused (reading one can
run code), with the one-line conversion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import torch

from specdec.errors import ModelFileError
from specdec.integrations.model_files import CONFIG, safetensors_problem, weight_files
from .config import HeadConfig
from .network import EagleHead

FORMAT = "specdec-eagle/1"
WEIGHTS = "model.safetensors"
PICKLE_CONVERSION = (
    "python -c \"import torch; from safetensors.torch import save_file; "
    "save_file({k: v.contiguous() for k, v in torch.load('DIR/pytorch_model.bin', map_location='cpu').items()}, "
    "'DIR/model.safetensors')\" (DIR: the head's directory)"
)
# prefixes of the decoder layer in the published layouts; the module names it `layer.`
LAYER_PREFIXES = {"eagle1": "layers.0.", "eagle3": "midlayer."}
# published options this reader does not run; each would change the computation
UNSUPPORTED = ("norm_before_fc", "fc_norm", "norm_before_residual", "norm_output")


@attrs.frozen
class LoadedHead:
    """A head read from disk, with what its files say about the target it was trained for."""

    head: EagleHead = attrs.field(eq=False)
    path: str
    target_name: str | None = None
    target_fingerprint: str | None = None  # None: not recorded (a published head)
    report: dict[str, Any] = attrs.field(factory=dict, eq=False)


def save_head(
    head: EagleHead, path: str | Path, *, target_name: str | None = None, target_fingerprint: str | None = None,
    report: dict[str, Any] | None = None, dtype: torch.dtype | None = None,
) -> Path:
    """Write `head` to the directory `path` in its design's published layout (weights in `dtype`,
    default as they are); returns the directory."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    c = head.config
    prefix = LAYER_PREFIXES[c.style]
    tensors: dict[str, torch.Tensor] = {}
    for name, value in head.state_dict().items():
        if name == "draft_ids":
            continue
        key = prefix + name[len("layer."):] if name.startswith("layer.") else name
        value = value.detach()
        tensors[key] = (value.to(dtype) if dtype is not None and value.is_floating_point() else value).contiguous()
    if c.trimmed:
        ids = head.draft_ids.detach().cpu()
        tensors["d2t"] = ids - torch.arange(len(ids))
        t2d = torch.zeros(c.vocab_size, dtype=torch.bool)
        t2d[ids] = True
        tensors["t2d"] = t2d
    save_file(tensors, str(path / WEIGHTS), metadata={"format": FORMAT})
    config = _published_config(c)
    config["specdec"] = {
        "format": FORMAT,
        "head": c.to_dict(),
        "target": {"name": target_name, "fingerprint": target_fingerprint},
        "report": report or {},
    }
    (path / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def _published_config(c: HeadConfig) -> dict[str, Any]:
    """The transformers-style config a published head of this design carries."""
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLMEagle3" if c.style == "eagle3" else "LlamaForCausalLMEagle"],
        "model_type": "llama",
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.dim,
        "num_hidden_layers": 1,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "vocab_size": c.vocab_size,
        "draft_vocab_size": c.draft_vocab_size,
        "target_hidden_size": c.target_hidden_size,
        "bias": c.fc_bias,
        "hidden_act": "silu",
    }
    if c.style == "eagle3" and c.layers:
        config["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": list(c.layers)}
    return config


def load_head(path: str | Path) -> LoadedHead:
    """Read a head directory (specdec's or a published EAGLE / EAGLE-3 one); a clear
    `ModelFileError` for anything missing, damaged, pickled or of another design."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a directory holding a draft head (config.json and model.safetensors)")
    config_file = path / CONFIG
    if not config_file.is_file():
        raise ModelFileError(f"{path} holds no {CONFIG}: a head directory has config.json and model.safetensors")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(f"cannot read {config_file} ({error})") from None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{config_file} is not a JSON object")
    tensors = _read_weights(path)
    ours = raw.get("specdec") if isinstance(raw.get("specdec"), dict) else None
    try:
        config = HeadConfig.from_dict(ours["head"]) if ours else _config_from_published(raw, tensors, config_file)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{config_file}: {error}") from None
    head = _build(config, tensors, path)
    target = (ours or {}).get("target") or {}
    return LoadedHead(head, str(path), target.get("name"), target.get("fingerprint"), (ours or {}).get("report") or {})


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for file in weight_files(path, PICKLE_CONVERSION):
        problem = safetensors_problem(file)
        if problem:
            raise ModelFileError(f"{problem}: the head in {path} is damaged; copy it again")
        tensors.update(load_file(str(file)))
    return tensors


def _style_of(tensors: dict[str, torch.Tensor]) -> str:
    if any(k.startswith("midlayer.") for k in tensors) or "layers.0.hidden_norm.weight" in tensors:
        return "eagle3"
    if any(k.startswith("layers.0.") for k in tensors):
        return "eagle1"
    raise ValueError("its weights hold neither an EAGLE decoder layer (layers.0.*) nor an EAGLE-3 one (midlayer.*)")


def _config_from_published(raw: dict[str, Any], tensors: dict[str, torch.Tensor], where: Path) -> HeadConfig:
    """A `HeadConfig` from a published head's transformers-style config and its weights."""
    eagle = raw.get("eagle_config") if isinstance(raw.get("eagle_config"), dict) else {}
    used = [name for name in UNSUPPORTED if raw.get(name) or eagle.get(name)]
    if used or eagle.get("use_aux_hidden_state") is False:
        what = ", ".join(used) or "use_aux_hidden_state false"
        raise ValueError(f"the head uses {what}, a variant specdec does not run")
    if int(raw.get("num_hidden_layers", 1)) != 1:
        raise ValueError(f"the head has {raw['num_hidden_layers']} decoder layers; specdec runs single-layer EAGLE heads")
    rope = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
    if (rope.get("rope_type") or rope.get("type") or "default") != "default":
        raise ValueError(f"the head's rotary scaling {rope.get('rope_type') or rope.get('type')!r} is not supported (only the default)")
    if (raw.get("hidden_act") or "silu") != "silu":
        raise ValueError(f"the head's activation {raw['hidden_act']!r} is not supported (only silu)")
    style = _style_of(tensors)
    hidden = int(raw["hidden_size"])
    target_hidden = int(raw.get("target_hidden_size") or hidden)
    vocab = int(raw["vocab_size"])
    draft_vocab = int(raw.get("draft_vocab_size") or vocab)
    fc = tensors.get("fc.weight")
    if fc is None:
        raise ValueError("its weights lack fc.weight, the input projection")
    fused = 1 if style == "eagle1" else int(fc.shape[1]) // target_hidden
    layers = eagle.get("eagle_aux_hidden_state_layer_ids") or ()
    heads = int(raw["num_attention_heads"])
    return HeadConfig(
        style=style, hidden_size=hidden, intermediate_size=int(raw["intermediate_size"]), num_heads=heads,
        num_kv_heads=int(raw.get("num_key_value_heads") or heads), vocab_size=vocab, draft_vocab_size=draft_vocab,
        target_hidden_size=target_hidden, head_dim=int(raw.get("head_dim") or 0), rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        rope_theta=float(raw.get("rope_theta") or rope.get("rope_theta") or 10000.0), layers=tuple(layers),
        fc_bias="fc.bias" in tensors, own_head="lm_head.weight" in tensors, own_embedding="embed_tokens.weight" in tensors,
        fused=fused,
    )


def _build(config: HeadConfig, tensors: dict[str, torch.Tensor], path: Path) -> EagleHead:
    """The head with the checkpoint's weights (the decoder layer's prefix renamed, d2t read)."""
    head = EagleHead(config)
    state: dict[str, torch.Tensor] = {}
    d2t = tensors.get("d2t")
    t2d = tensors.get("t2d")
    for key, value in tensors.items():
        if key in ("d2t", "t2d"):
            continue
        prefix = next((p for p in ("midlayer.", "layers.0.") if key.startswith(p)), None)
        state["layer." + key[len(prefix):] if prefix else key] = value
    expected = {k: v for k, v in head.state_dict().items() if k != "draft_ids"}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"lacks {', '.join(missing[:4])}"] if missing else []) + ([f"has unknown {', '.join(unexpected[:4])}"] if unexpected else [])
        raise ModelFileError(f"the head in {path} does not match its config ({config.style}): it {' and '.join(parts)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelFileError(f"the head in {path}: {key} is {tuple(value.shape)}, its config needs {tuple(expected[key].shape)}")
    head.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)
    if config.trimmed:
        if d2t is None:
            raise ModelFileError(f"the head in {path} scores {config.draft_vocab_size} of {config.vocab_size} tokens but has no d2t map")
        ids = torch.arange(config.draft_vocab_size) + d2t.long()
        if t2d is not None and (t2d.numel() != config.vocab_size or int(t2d.sum()) != len(ids) or not bool(t2d.bool()[ids.clamp(0, config.vocab_size - 1)].all())):
            raise ModelFileError(f"the head in {path}: its d2t and t2d maps disagree")
        try:
            head.set_draft_vocabulary(ids)
        except ValueError as error:
            raise ModelFileError(f"the head in {path}: d2t maps outside the target's vocabulary ({error})") from None
    return head.float().eval()
