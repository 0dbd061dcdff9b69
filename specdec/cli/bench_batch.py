"""`specdec bench --batch-size 1,4,8,16`: every method decoding the same batches of prompts at
several batch sizes, in one run.

specdec's methods decode a batch in one `Decoder.generate(list, batch_size=B)` call (B = 1 runs
the same path), `hf-greedy` in one transformers `generate` call, left-padded. Outputs: the table,
NAME.json (summaries and every batch's record), NAME.png and NAME.md or the --page.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import attrs

from specdec.bench.batch_report import COLUMNS, plot_batches
from specdec.bench.batch_runner import EncodedPrompt, mixed_order, run_batches, summarize_batches
from specdec.bench.page import write_page
from specdec.bench.report import markdown_table, print_table, write_json
from specdec.bench.spec import check_batchable
from specdec.cli.options import prompt_set
from specdec.errors import ConfigurationError

DEFAULT_METHODS = "target-only;fixed:k=2;fixed:k=4;hf-greedy"


def run_batch_bench(args: argparse.Namespace) -> int:
    from specdec.cli.bench import built_methods, checked_outputs, method_specs, run_meta

    if args.compare:
        raise ConfigurationError("--compare pairs prompts decoded one at a time; with --batch-size compare the summaries")
    specs = method_specs(args, DEFAULT_METHODS)
    for spec in specs:
        check_batchable(spec)
    prompts = mixed_order(prompt_set(args))
    checked_outputs(args)
    methods, baseline, chat = built_methods(args, specs)
    encoded = [EncodedPrompt(p.category, p.question_id, tuple(baseline.encode(p.text, chat=chat))) for p in prompts]
    records = run_batches(
        methods, encoded, args.batch_size, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        repeats=args.repeats, warmup=args.warmup, seed=args.seed,
    )
    summaries = summarize_batches(records, "target-only", specs)
    rows = [s.to_dict() for s in summaries]
    mode = "greedy" if args.temperature == 0 else f"T={args.temperature}"
    print_table(rows, f"specdec bench in batches ({mode}, {len(prompts)} prompts, {args.max_new_tokens} tokens)", COLUMNS)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta = {**run_meta(args), "mode": mode, "chat": chat, "batch_sizes": args.batch_size, "peak_rss_mib": round(peak_mib, 1),
            "methods": specs}  # fmt: skip
    out = Path(args.out)
    write_json(out / f"{args.name}.json", {"meta": meta, "summaries": rows, "records": [attrs.asdict(r) for r in records]})
    if args.page:
        write_page(out / f"{args.name}.json", Path(args.page))
        print(f"peak RSS {peak_mib:.0f} MiB; wrote {out / args.name}.json, .png and {args.page}")
    else:
        (out / f"{args.name}.md").write_text(
            f"`specdec bench --batch-size` run {meta['date']}, {mode}; peak RSS {meta['peak_rss_mib']} MiB\n\n"
            f"{markdown_table(rows, COLUMNS)}\n"
        )
        plot_batches(summaries, out / f"{args.name}.png", f"batches, {mode}")
        print(f"peak RSS {peak_mib:.0f} MiB; wrote {out / args.name}.json, .md, .png")
    return 0
