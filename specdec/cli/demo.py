"""`specdec demo`: the default pair on a few prompts, target-only vs speculative in one run."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from specdec.cli.options import add_model_options, add_strategy_options, build_decoders, chat_prompts
from specdec.cli.parser import positive_int

DEMO_PROMPTS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "Write a Python function that returns the n-th Fibonacci number.",
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="speculative vs target-only decoding on a few prompts, with the speedup",
        description="Runs the default pair (or --target/--draft) on a few prompts (in the target's chat template if it has one), greedy, and prints "
        "each answer, the tokens/s of target-only and speculative decoding measured in the same run, "
        "the speedup and the mean accepted length. Unless --proposer or --proposer-param is given, the draft "
        "runs in int8 (the fastest exact setting measured on a CPU); pass --policy/--proposer/--proposer-param "
        "to try others.",
    )
    add_model_options(parser)
    add_strategy_options(parser, policy="auto", proposer_params="int8=true")
    parser.add_argument("--max-new-tokens", type=positive_int, default=96, help="tokens per prompt (default 96)")
    parser.add_argument("--prompt", action="append", help="use this prompt instead of the built-in ones (repeatable)")
    parser.set_defaults(run=run, proposer=None)


DEMO_PROPOSER = ("draft", ("int8=true",))  # by registry name, with its parameters


def run(args: argparse.Namespace) -> int:
    console = Console()
    if args.proposer is None:  # the demo's default: the draft model in int8
        args.proposer, args.proposer_param = DEMO_PROPOSER[0], list(args.proposer_param or DEMO_PROPOSER[1])
    with console.status("loading models"):
        speculative, baseline = build_decoders(args, with_baseline=True)
    prompts = tuple(args.prompt or DEMO_PROMPTS)
    chat = chat_prompts(baseline, args)
    # warm-up so that one-time costs (allocations, kernels) count for neither side
    for decoder in (baseline, speculative):
        decoder.generate(prompts[0], 8, chat=chat)
    table = Table(title=f"specdec demo: policy {speculative.policy!r}, proposer {type(speculative.proposer).__name__}")
    for column in ("prompt", "target-only tok/s", "speculative tok/s", "speedup", "mean accepted length", "identical"):
        table.add_column(column, justify="right" if column != "prompt" else "left")
    base_tokens = base_seconds = spec_tokens = spec_seconds = 0.0
    for prompt in tqdm(prompts, desc="prompts", unit="prompt"):
        reference = baseline.generate(prompt, args.max_new_tokens, chat=chat)
        result = speculative.generate(prompt, args.max_new_tokens, chat=chat)
        console.print(f"\n[bold]> {prompt}[/bold]\n{result.text}\n")
        b, s = reference.stats, result.stats
        base_tokens += b.generated
        base_seconds += b.seconds
        spec_tokens += s.generated
        spec_seconds += s.seconds
        table.add_row(
            prompt[:40] + ("..." if len(prompt) > 40 else ""),
            f"{b.tokens_per_second:.1f}",
            f"{s.tokens_per_second:.1f}",
            f"{s.tokens_per_second / b.tokens_per_second:.2f}x",
            f"{s.mean_accepted_length:.2f}",
            "yes" if reference.ids == result.ids else "NO",
        )
    console.print(table)
    overall = (spec_tokens / spec_seconds) / (base_tokens / base_seconds)
    console.print(f"overall: target-only {base_tokens / base_seconds:.1f} tok/s, speculative {spec_tokens / spec_seconds:.1f} tok/s, speedup {overall:.2f}x")
    return 0
