"""`specdec generate`: speculative (or target-only) generation of one prompt."""

from __future__ import annotations

import argparse
import json
import sys

from specdec.cli.options import add_model_options, add_sampling_options, add_strategy_options, build_decoders, sampling_kwargs
from specdec.streaming import TextDeltas


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate text for one prompt",
        description="Generate a continuation of PROMPT. Streams tokens to the terminal as they are accepted, "
        "then prints the statistics; with --json prints one JSON object (text, ids, stats).",
    )
    parser.add_argument("prompt", metavar="PROMPT", help="the prompt text")
    add_model_options(parser)
    add_strategy_options(parser)
    add_sampling_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    decoder, _ = build_decoders(args)
    kwargs = sampling_kwargs(args)
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
    result = decoder.last_result
    s = result.stats
    print(
        f"\n\n[{s.generated} tokens in {s.seconds:.2f}s = {s.tokens_per_second:.1f} tok/s; rounds {s.rounds}, "
        f"mean accepted length {s.mean_accepted_length:.2f}, acceptance {s.acceptance_rate:.2f}, "
        f"target forwards {s.target_forwards}, draft forwards {s.draft_forwards}; finish: {result.finish_reason}]",
        file=sys.stderr,
    )
    return 0
