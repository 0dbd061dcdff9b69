"""Options shared by several subcommands, and building a Decoder from them."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from specdec.cli.values import build_strategy, parse_params
from specdec.decoder import Decoder
from specdec.defaults import default_draft, default_target
from specdec.errors import ConfigurationError
from specdec.plugins import registry


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument("--target", help="target model: directory (safetensors or GGUF) or cached hub id (default: the embedded SmolLM2-135M-Instruct)")
    group.add_argument("--draft", help="draft model for model-based proposers (default: the embedded 4-layer SmolLM2 draft)")
    group.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    group.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="weights dtype (default float32)")


def add_prompt_set_options(parser: argparse.ArgumentParser, *, name: str, max_new_tokens: int) -> None:
    """The Spec-Bench selection and outputs shared by `bench` and `ceiling`."""
    parser.add_argument("--categories", default=None, help="comma-separated Spec-Bench categories (default: all 13)")
    parser.add_argument("--per-category", type=int, default=3, help="prompts per category (default 3)")
    parser.add_argument("--prompts", default=None, help="a Spec-Bench-format JSONL file (default: data/spec_bench.jsonl beside the models directory)")
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help=f"tokens per prompt (default {max_new_tokens})")
    parser.add_argument("--out", default="bench-out", help="output directory (default bench-out/)")
    parser.add_argument("--name", default=name, help=f"file stem of the outputs (default {name})")


def add_strategy_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("strategies")
    group.add_argument("--policy", default="fixed", help="length policy name (default: fixed); see `specdec plugins`")
    group.add_argument("--policy-param", action="append", metavar="KEY=VALUE", help="policy parameter (repeatable), e.g. k=4")
    group.add_argument("--proposer", default="draft", help="proposer name (default: draft)")
    group.add_argument("--proposer-param", action="append", metavar="KEY=VALUE", help="proposer parameter (repeatable)")
    group.add_argument("--target-only", action="store_true", help="plain autoregressive decoding with the target (the baseline)")


def add_sampling_options(parser: argparse.ArgumentParser, *, max_new_tokens: int = 128) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help=f"tokens to generate at most (default {max_new_tokens})")
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default), > 0 samples")
    group.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (sampling)")
    group.add_argument("--top-p", type=float, default=None, help="nucleus mass in (0, 1] (sampling)")
    group.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    group.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop when this text appears (repeatable)")


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
        "stop": tuple(args.stop),
        "chat": args.chat,
    }


def load(path: str, args: argparse.Namespace):
    from specdec.integrations.loading import load_model

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    return load_model(path, dtype=dtype, threads=args.threads)


def build_decoders(args: argparse.Namespace, *, with_baseline: bool = False) -> tuple[Decoder, Decoder | None]:
    """(speculative or target-only decoder, target-only baseline sharing the target if asked)."""
    target = load(args.target or default_target(), args)
    baseline = Decoder(target) if with_baseline else None
    if getattr(args, "target_only", False):
        return Decoder(target), baseline
    reg = registry()
    resources: dict[str, Any] = {}
    if reg.get("proposer", args.proposer).uses_draft_model:
        resources["model"] = load(args.draft or default_draft(), args)
    elif args.draft:
        raise ConfigurationError(f"proposer {args.proposer!r} does not use a draft model; drop --draft")
    proposer = build_strategy(reg, "proposer", args.proposer, parse_params(args.proposer_param), **resources)
    # a policy tied to the draft (pacer) gets it as a resource too
    policy = build_strategy(reg, "policy", args.policy, parse_params(args.policy_param), **resources)
    return Decoder(target, proposer=proposer, policy=policy), baseline
