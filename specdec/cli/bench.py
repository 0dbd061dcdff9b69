"""`specdec bench`: methods x Spec-Bench categories, same run, tables + JSON + Markdown + PNG."""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import os
import platform
import resource
import shlex
from pathlib import Path
from typing import Any

import attrs
import torch

from specdec.bench.compare import CAPTION
from specdec.bench.page import write_page
from specdec.bench.report import COLUMNS, cpu_cores, markdown_table, plot_speedups, print_table, write_json
from specdec.bench.runner import run_benchmark, summarize
from specdec.bench.spec import HF_HELP, build_method, check_method
from specdec.bench.vllm_methods import VLLM_DEFAULT_METHODS, VLLM_METHODS
from specdec.cli.compare import add_pair_option, comparisons, render
from specdec.cli.options import add_model_options, add_prompt_set_options, chat_prompts, load, prompt_set
from specdec.cli.parser import non_negative_float, non_negative_int, output_directory, positive_int
from specdec.defaults import default_draft, default_target
from specdec.errors import ConfigurationError
from specdec.integrations.gemm_plans import gemm_report
from specdec.machine import cpu_model


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark methods per Spec-Bench category (tables, JSON, Markdown, PNG)",
        description="Decode Spec-Bench first turns with each method, interleaved per prompt in one run, and report "
        "tokens/s, speedup over target-only, mean accepted length, acceptance rate and forwards per token. "
        "Methods: target-only; POLICY[:K=V,...][+PROPOSER[:K=V,...]] for specdec (e.g. fixed:k=3, svip, "
        f"auto+prompt-lookup); transformers' generate on the same models: {HF_HELP}.",
    )
    add_model_options(parser)
    add_prompt_set_options(parser, name="bench", max_new_tokens=96)
    parser.add_argument("--methods", default=None,
                        help="methods separated by ';' (default: target-only;fixed:k=2;fixed:k=4;hf-assisted, "
                        f"and with --engine vllm: {VLLM_DEFAULT_METHODS})")
    parser.add_argument("--method", action="append", default=[], help="add one method (repeatable)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--repeats", type=positive_int, default=1, help="timed repetitions of every prompt (default 1)")
    parser.add_argument("--warmup", type=non_negative_int, default=1, help="untimed warm-up runs per method (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed of the first repeat (default 0)")
    add_pair_option(parser, "--compare")
    parser.add_argument("--page", default=None, metavar="PAGE.md",
                        help="also write a results page from the run file (as `python -m specdec.bench.page RUN.json PAGE.md`)")
    group = parser.add_argument_group("inside vLLM (--engine vllm)")
    group.add_argument("--engine", choices=["specdec", "vllm"], default="specdec",
                       help="where the methods run: specdec's own loop, one prompt at a time (default), or vLLM, with "
                       f"several requests in flight; methods inside vLLM: target-only, {VLLM_METHODS}, and specdec's "
                       "POLICY[+PROPOSER] through its plugin")
    group.add_argument("--concurrency", type=concurrency_levels, default=None,
                       help="requests in flight, comma-separated (default 1,4,16); give --per-category at least the largest")
    group.add_argument("--num-speculative-tokens", type=positive_int, default=None,
                       help="slots vLLM reserves per request for specdec's methods, whose policies may draft fewer (default 8)")
    group.add_argument("--max-model-len", type=positive_int, default=None, help="longest prompt + output in tokens (default 2048)")
    group.add_argument("--compile", action="store_true", default=None,
                       help="let vLLM compile the model (faster steps, minutes longer to start); default: eager mode")
    batches = parser.add_argument_group("in batches (--batch-size)")
    batches.add_argument("--batch-size", type=concurrency_levels, default=None,
                         help="decode the prompts (categories mixed) in batches of these sizes, comma-separated (e.g. "
                         "1,4,8,16), every method on every batch, and report tokens/s per method and batch size; "
                         "default methods then: target-only;fixed:k=2;fixed:k=4;hf-greedy")
    parser.set_defaults(run=run, bench_parser=parser)


VLLM_ONLY = ("concurrency", "num_speculative_tokens", "max_model_len", "compile")


def concurrency_levels(text: str) -> list[int]:
    """`1,4,16` as [1, 4, 16]: whole numbers >= 1, each once, in increasing order."""
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1 or sorted(set(levels)) != levels:
        raise argparse.ArgumentTypeError(f"expected increasing whole numbers >= 1 separated by commas, e.g. 1,4,16; got {text!r}")
    return levels


def command_line(args: argparse.Namespace) -> str:
    """The `specdec bench` command that these arguments came from (options left at their default omitted)."""
    words = ["specdec", "bench"]
    for action in args.bench_parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest == "help" or value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        if action.dest == "compare":
            for method, reference in value:
                words += [flag, method, reference]
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                words += [flag, str(item)]
        elif action.nargs == 0:  # a switch: its flag alone
            words.append(flag)
        elif isinstance(value, list):  # one option holding several values (--concurrency 1,4,16)
            words += [flag, ",".join(map(str, value))]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def run_meta(args: argparse.Namespace) -> dict:
    """What a run file records of the machine, the versions, the command and the prompt set."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "cpu": cpu_model(),
        "cpu_cores": cpu_cores(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "command": command_line(args),
        "versions": {"specdec": _version("specdec"), "torch": torch.__version__, "transformers": _version("transformers"),
                     "python": platform.python_version()},
        "target": Path(args.target or default_target()).name,
        "draft": Path(args.draft or default_draft()).name,
        "torch": torch.__version__,
        "prompts_per_category": args.per_category,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def method_specs(args: argparse.Namespace, default: str) -> list[str]:
    """The methods asked for (`default` without --methods), target-only first unless given, each checked."""
    methods = args.methods if args.methods is not None else default
    specs = [m for m in methods.split(";") if m.strip()] + args.method
    if "target-only" not in specs:
        specs.insert(0, "target-only")
    for spec in specs:
        check_method(spec)
    return specs


def checked_outputs(args: argparse.Namespace) -> None:
    """Refuse an --out or --page directory that cannot be written, before any model is loaded."""
    output_directory(args.out, "--out")
    if args.page:
        output_directory(Path(args.page).parent, "--page")


def built_methods(args: argparse.Namespace, specs: list[str]) -> tuple[list, Any, bool]:
    """(the methods, target-only's decoder, whether prompts go through the chat template), the models loaded."""
    target = load(args.target or default_target(), args)
    draft_loader = functools.lru_cache(maxsize=1)(lambda: load(args.draft or default_draft(), args))
    methods = [build_method(spec, target, draft_loader) for spec in specs]
    baseline = methods[specs.index("target-only")].decoder
    return methods, baseline, chat_prompts(baseline, args)


def run(args: argparse.Namespace) -> int:
    if args.engine == "vllm":
        if args.batch_size is not None:
            raise ConfigurationError("--batch-size decodes batches in specdec's own loop; inside vLLM give --concurrency")
        from specdec.cli.bench_vllm import run_vllm

        return run_vllm(args)
    given = [f"--{name.replace('_', '-')}" for name in VLLM_ONLY if getattr(args, name) is not None]
    if given:
        raise ConfigurationError(f"{', '.join(given)} only apply with --engine vllm")
    if args.batch_size is not None:
        from specdec.cli.bench_batch import run_batch_bench

        return run_batch_bench(args)
    specs = method_specs(args, "target-only;fixed:k=2;fixed:k=4;hf-assisted")
    missing = sorted({name for pair in args.compare for name in pair} - set(specs))
    if missing:
        raise ConfigurationError(f"--compare names methods that are not benchmarked: {', '.join(missing)}")
    prompts = prompt_set(args)
    checked_outputs(args)
    methods, baseline, chat = built_methods(args, specs)
    records = run_benchmark(
        methods, prompts, lambda text: baseline.encode(text, chat=chat), max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, repeats=args.repeats, warmup=args.warmup, seed=args.seed,
    )
    summaries = summarize(records, "target-only")
    order = {spec.strip(): i for i, spec in enumerate(specs)}
    summaries.sort(key=lambda s: (s.category == "all", s.category, order.get(s.method, 99)))
    rows = [s.to_dict() for s in summaries]
    mode = "greedy" if args.temperature == 0 else f"T={args.temperature}"
    print_table(rows, f"specdec bench ({mode}, {args.per_category} prompts/category, {args.max_new_tokens} tokens)")
    paired = comparisons(records, args.compare)
    compared = ""
    if paired:
        table = render(paired, f"paired comparisons ({CAPTION})")
        compared = f"\n\nPaired comparisons ({CAPTION}):\n\n{table}"
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta = {**run_meta(args), "gemm": gemm_report(), "mode": mode, "chat": chat, "peak_rss_mib": round(peak_mib, 1), "methods": specs}
    out = Path(args.out)
    write_json(out / f"{args.name}.json", {"meta": meta, "summaries": rows, "comparisons": [c.to_dict() for c in paired], "records": [
        {"method": r.method, "category": r.category, "question_id": r.question_id, "repeat": r.repeat,
         "prompt_tokens": r.prompt_tokens, "tokens": r.tokens,
         **{key: value for key, value in attrs.asdict(r.run).items() if key != "ids"}} for r in records]})
    if not args.page:  # with --page, the page is the run's Markdown
        (out / f"{args.name}.md").write_text(
            f"`specdec bench` run {meta['date']} ({meta['machine']}, {meta['cpu']}, torch {meta['torch']}), {mode}, "
            f"{'' if chat else 'prompts as raw text, '}"
            f"{args.per_category} prompts per category, {args.max_new_tokens} new tokens, {args.repeats} repeat(s); "
            f"peak RSS {meta['peak_rss_mib']} MiB. GEMM kernels (`integrations/projection.py`): "
            f"{'; '.join(f'{shape}: {plan}' for shape, plan in meta['gemm'].items()) or 'none measured'}.\n\n"
            f"{markdown_table(rows, COLUMNS)}{compared}\n"
        )
    plot_speedups(summaries, out / f"{args.name}.png", f"speedup over target-only ({mode})", "target-only")
    print(f"peak RSS {peak_mib:.0f} MiB; wrote {out / args.name}.json{'' if args.page else ', .md'}, .png")
    if args.page:
        write_page(out / f"{args.name}.json", Path(args.page))
        print(f"wrote {args.page}")
    return 0
