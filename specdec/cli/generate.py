"""`specdec generate`: speculative (or target-only) generation of one prompt, or of a file of them."""

from __future__ import annotations

import argparse
import json
import sys
import time

from specdec.cli.options import add_model_options, add_sampling_options, add_strategy_options, build_decoders, sampling_kwargs
from specdec.cli.parser import positive_int
from specdec.decoder import Decoder
from specdec.errors import ConfigurationError
from specdec.policy import ReferencePolicy
from specdec.stats import GenerationResult
from specdec.streaming import TextDeltas


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate text for one prompt or a file of prompts",
        description="Generate a continuation of PROMPT. Streams tokens to the terminal as they are accepted, "
        "then prints the statistics; with --json prints one JSON object (text, ids, stats). With --prompts FILE "
        "(one prompt a line, or JSONL with a prompt, text, question or turns field) the prompts decode as a batch: "
        "each text is printed in prompt order under a header [prompt i], with a statistics line per prompt and a "
        "total on stderr; with --json, one JSON object a line per prompt, in order, each with its index.",
    )
    parser.add_argument("prompt", metavar="PROMPT", nargs="?", help="the prompt text (or give --prompts)")
    parser.add_argument("--prompts", metavar="FILE", help="decode every prompt of FILE (one a line, or JSONL) instead of one PROMPT")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="with --prompts: prompts decoded at once (default: all, up to the decoder's cap)")
    add_model_options(parser)
    add_strategy_options(parser)
    add_sampling_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON (one object per prompt) instead of streaming text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prompts = _prompt_file(args)  # read before any model is loaded
    decoder, _ = build_decoders(args)
    kwargs = sampling_kwargs(args)
    if prompts is not None:
        return _run_batch(decoder, prompts, args, kwargs)
    if decoder.prepare(args.prompt, args.max_new_tokens, chat=args.chat):
        print("oracle (analysis only): the target's greedy continuation was computed first", file=sys.stderr)
    if args.json:
        result = decoder.generate(args.prompt, args.max_new_tokens, **kwargs)
        payload = result.to_dict()
        print(json.dumps(payload))
        return 0
    text = TextDeltas(decoder.codec)  # whole characters only: a token may end inside one
    for token in decoder.stream(args.prompt, args.max_new_tokens, **kwargs):
        sys.stdout.write(text.add([token]))
        sys.stdout.flush()
    sys.stdout.write(text.flush())
    # the stream ends with the same stats a generate() call reports
    print(f"\n\n[{_statistics(decoder.last_result)}]", file=sys.stderr)
    return 0


def _prompt_file(args: argparse.Namespace) -> list[str] | None:
    """The prompts of --prompts (None for a single PROMPT); exactly one of the two is given."""
    from specdec.cli.train_pacer import read_prompts

    if args.prompts is None:
        if args.prompt is None:
            raise ConfigurationError("give a PROMPT or --prompts FILE")
        if args.batch_size is not None:
            raise ConfigurationError("--batch-size goes with --prompts")
        return None
    if args.prompt is not None:
        raise ConfigurationError("give either a PROMPT or --prompts FILE, not both")
    prompts = read_prompts(args.prompts, training=False)
    if not prompts:
        raise ConfigurationError(f"the prompt file {args.prompts!r} holds no prompts")
    return prompts


def _run_batch(decoder: Decoder, prompts: list[str], args: argparse.Namespace, kwargs: dict) -> int:
    """Decode `prompts` as one batch and print each result in prompt order (rows finish in any
    order, so the texts are printed once all are done rather than streamed into each other)."""
    if isinstance(decoder.policy, ReferencePolicy):
        raise ConfigurationError(f"the policy {args.policy!r} needs the target's continuation of one PROMPT; it does not take --prompts")
    started = time.perf_counter()
    results = decoder.generate(prompts, args.max_new_tokens, batch_size=args.batch_size, **kwargs)
    seconds = time.perf_counter() - started
    for index, result in enumerate(results):
        if args.json:
            print(json.dumps({"index": index, **result.to_dict()}))
            continue
        print(f"[prompt {index}]\n{result.text}\n", flush=True)
        print(f"[prompt {index}: {_statistics(result)}]", file=sys.stderr)
    if not args.json:
        tokens = sum(r.stats.generated for r in results)
        rate = tokens / max(seconds, 1e-9)
        print(f"[total: {len(results)} prompts, {tokens} tokens in {seconds:.2f}s = {rate:.1f} tok/s]", file=sys.stderr)
    return 0


def _statistics(result: GenerationResult) -> str:
    s = result.stats
    return (
        f"{s.generated} tokens in {s.seconds:.2f}s = {s.tokens_per_second:.1f} tok/s; rounds {s.rounds}, "
        f"mean accepted length {s.mean_accepted_length:.2f}, acceptance {s.acceptance_rate:.2f}, "
        f"target forwards {s.target_forwards}, draft forwards {s.draft_forwards}; finish: {result.finish_reason}"
    )
