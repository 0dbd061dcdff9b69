"""Options shared by several subcommands, and building a Decoder from them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from specdec.bench.prompts import BenchPrompt, load_spec_bench
from specdec.cli.parser import non_negative_float, positive_int, seed
from specdec.cli.values import parse_params, typed_params
from specdec.decoder import Decoder
from specdec.defaults import default_draft, default_target
from specdec.errors import ConfigurationError, InputError
from specdec.integrations.placement import DTYPES, placement
from specdec.plugins import registry


def add_model_options(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """--target, --draft, --threads, --dtype and (unless the command's engine picks its own
    device, as vLLM does) --device."""
    group = parser.add_argument_group("models")
    group.add_argument("--target", help="target model: directory (safetensors or GGUF) or cached hub id (default: the embedded SmolLM2-135M-Instruct)")
    group.add_argument("--draft", help="draft model for model-based proposers (default: the embedded 4-layer SmolLM2 draft)")
    group.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    if device:
        group.add_argument("--device", default="cpu", metavar="{cpu,cuda,cuda:N}",
                           help="where the models run (default cpu); target and draft run on the same device")
    group.add_argument("--dtype", choices=list(DTYPES), default="float32",
                       help="weights dtype (default float32): float32 or bfloat16 on cpu, also float16 on cuda; greedy output "
                       "equals target-only token for token in float32 only (see the limits page)")


def add_prompt_set_options(parser: argparse.ArgumentParser, *, name: str, max_new_tokens: int) -> None:
    """The Spec-Bench selection and outputs shared by `bench` and `ceiling`."""
    parser.add_argument("--categories", default=None, help="comma-separated Spec-Bench categories (default: all 13)")
    parser.add_argument("--per-category", type=positive_int, default=3, help="prompts per category (default 3)")
    parser.add_argument("--prompts", default=None, help="a Spec-Bench-format JSONL file (default: data/spec_bench.jsonl beside the models directory)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=max_new_tokens, help=f"tokens per prompt (default {max_new_tokens})")
    parser.add_argument("--out", default="bench-out", help="output directory (default bench-out/)")
    parser.add_argument("--name", default=name, help=f"file stem of the outputs (default {name})")
    parser.add_argument("--no-chat", action="store_true",
                        help="send the prompts as raw text (default: wrapped in the target's chat template; a target "
                        "without one gets raw text, with a note on stderr)")


def prompt_set(args: argparse.Namespace) -> list[BenchPrompt]:
    """The prompts `add_prompt_set_options` selects (read before any model is loaded: a bad
    category or file is reported at once)."""
    categories = [c.strip() for c in (args.categories or "").split(",") if c.strip()]
    return load_spec_bench(args.prompts, categories=categories or None, per_category=args.per_category)


def chat_prompts(decoder: Decoder, args: argparse.Namespace) -> bool:
    """Whether prompts are wrapped in the target's chat template: yes, unless --no-chat was given
    or the target has no chat template (then raw text, said in one line on stderr)."""
    if getattr(args, "no_chat", False):
        return False
    try:
        decoder.encode("Hello", chat=True)
    except InputError:
        print(f"specdec: note: {decoder.target.name} has no chat template; sending the prompts as raw text (--no-chat)", file=sys.stderr)
        return False
    return True


def add_strategy_options(parser: argparse.ArgumentParser, *, policy: str = "fixed", proposer_params: str = "") -> None:
    """--policy (default `policy`), --proposer (default draft) and their parameters; `proposer_params`
    names the --proposer-param a command adds to the default proposer (`demo`: int8=true)."""
    group = parser.add_argument_group("strategies")
    group.add_argument("--policy", default=policy, help=f"length policy name (default: {policy}); see `specdec plugins`")
    group.add_argument("--policy-param", action="append", metavar="KEY=VALUE", help="policy parameter (repeatable), e.g. k=4")
    with_params = f" with {proposer_params}" if proposer_params else ""
    group.add_argument("--proposer", default="draft", help=f"proposer name (default: draft{with_params})")
    group.add_argument("--proposer-param", action="append", metavar="KEY=VALUE", help="proposer parameter (repeatable)")
    group.add_argument("--target-only", action="store_true", help="plain autoregressive decoding with the target (the baseline)")


def add_sampling_options(parser: argparse.ArgumentParser, *, max_new_tokens: int = 128) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-new-tokens", type=positive_int, default=max_new_tokens, help=f"tokens to generate at most (default {max_new_tokens})")
    group.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy (default), > 0 samples")
    group.add_argument("--top-k", type=positive_int, default=None, help="keep the k most likely tokens (sampling)")
    group.add_argument("--top-p", type=float, default=None, help="nucleus mass in (0, 1] (sampling)")
    group.add_argument("--seed", type=seed, default=0, help="seed of the sampler (default 0)")
    group.add_argument("--coupled", action=argparse.BooleanOptionalAction, default=True,
                       help="coupled sampling (default): the output is target-only sampling's with the same seed, token "
                       "for token; --no-coupled samples with the standard rule, which accepts more where the draft is close")
    group.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop when this text appears (repeatable)")


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
        "coupled": args.coupled,
        "stop": tuple(args.stop),
        "chat": args.chat,
    }


def load(path: str, args: argparse.Namespace):
    from specdec.integrations.loading import load_model

    return load_model(path, device=args.device, dtype=args.dtype, threads=args.threads)


def check_placement(args: argparse.Namespace) -> None:
    """--device and --dtype, checked before any model is loaded (a CUDA device that is not
    there, float16 on a CPU: one line)."""
    placement(args.device, args.dtype)


def build_decoders(args: argparse.Namespace, *, with_baseline: bool = False) -> tuple[Decoder, Decoder | None]:
    """(speculative or target-only decoder, target-only baseline sharing the target if asked).

    The strategy names and parameters are checked before any model is loaded, with --target-only
    too (which uses neither strategy, but a mistake in their options is still a mistake)."""
    target_only = getattr(args, "target_only", False)
    reg = registry()
    uses_draft = reg.get("proposer", args.proposer).uses_draft_model
    if args.draft and not uses_draft and not target_only:
        raise ConfigurationError(f"proposer {args.proposer!r} does not use a draft model; drop --draft")
    reserved = ("model",) if uses_draft else ()
    proposer_params = typed_params(reg, "proposer", args.proposer, parse_params(args.proposer_param), reserved=reserved)
    policy_params = typed_params(reg, "policy", args.policy, parse_params(args.policy_param), reserved=reserved)
    policy = reg.get("policy", args.policy)
    if target_only and not policy.uses_draft_model:
        policy.build(policy_params)  # its values' ranges, which only building checks
    check_placement(args)
    target = load(args.target or default_target(), args)
    baseline = Decoder(target) if with_baseline else None
    if target_only:
        return Decoder(target), baseline
    # the draft goes to the proposer and to a policy tied to it (pacer), as Decoder(draft=...) does
    draft = load(args.draft or default_draft(), args) if uses_draft else None
    decoder = Decoder(
        target, proposer=args.proposer, policy=args.policy, draft=draft,
        proposer_params=proposer_params, policy_params=policy_params,
    )  # fmt: skip
    return decoder, baseline
