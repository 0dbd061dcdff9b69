"""`specdec ceiling`: per Spec-Bench category, the most a draft + context-copy proposer could gain."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from tqdm import tqdm

from specdec.bench.ceiling import SOURCES, measure, summarize
from specdec.bench.report import markdown_table, print_table, write_json
from specdec.cli.options import add_model_options, add_prompt_set_options, chat_prompts, load, prompt_set
from specdec.cli.parser import output_directory, positive_int
from specdec.decoder import Decoder
from specdec.defaults import default_draft, default_target
from specdec.errors import ConfigurationError
from specdec.integrations.base import ReducibleModel


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ceiling",
        help="oracle ceiling per Spec-Bench category: tokens per target forward a draft + copy proposer could reach",
        description="Decode Spec-Bench first turns with the target alone (greedy), then count the rounds an oracle "
        "would need drafting exactly the accepted tokens from: the draft model alone (perfect stop), the newest "
        "context copy alone, the better of the two per round, or either per position. Reports tokens per round "
        "and the speedup ceiling over target-only (each round priced at one target step, drafting free, the "
        "measured prefill included). Compare it with `specdec bench` before tuning a proposer for a category.",
    )
    add_model_options(parser)
    add_prompt_set_options(parser, name="ceiling", max_new_tokens=64)
    parser.add_argument("--ngram", type=positive_int, default=2, help="longest n-gram a copy matches (default 2, as Ouroboros)")
    parser.add_argument("--copy-length", type=positive_int, default=10, help="tokens per copy, at most (default 10, as Ouroboros)")
    parser.add_argument("--int8", action="store_true", help="the draft's agreement in int8, as `draft:int8=true` drafts")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prompts = prompt_set(args)
    output_directory(args.out, "--out")
    target = load(args.target or default_target(), args)
    draft = load(args.draft or default_draft(), args)
    if args.int8:
        if not isinstance(draft, ReducibleModel):
            raise ConfigurationError(f"--int8 needs a transformers draft model; {draft!r} cannot be quantized")
        draft = draft.quantized()
    decoder = Decoder(target)
    chat = chat_prompts(decoder, args)
    records = []
    for prompt in tqdm(prompts, desc="ceiling", unit="prompt"):
        ids = decoder.encode(prompt.text, chat=chat)
        record = measure(target, draft, ids, args.max_new_tokens, ngram=args.ngram, copy_length=args.copy_length)
        if record is not None:
            records.append({"category": prompt.category, "question_id": prompt.question_id, **record})
    rows = summarize(records)
    columns = [("category", "category", "{}"), ("prompts", "prompts", "{}"), ("prompt_tokens", "prompt len", "{:.0f}"),
               ("prefill_share", "prefill share", "{:.0%}"), ("draft_agreement", "draft agrees", "{:.2f}"),
               ("repeats_prompt", "6-grams from prompt", "{:.0%}"), ("repeats_output", "6-grams repeating output", "{:.0%}")]
    columns += [(f"tokens_per_round_{s}", f"tok/round {s}", "{:.2f}") for s in SOURCES]
    columns += [(f"speedup_{s}", f"ceiling {s}", "{:.2f}x") for s in SOURCES]
    print_table(rows, f"oracle ceiling (greedy, {args.per_category} prompts/category, {args.max_new_tokens} tokens)", columns)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "prompts_per_category": args.per_category,
            "max_new_tokens": args.max_new_tokens, "ngram": args.ngram, "copy_length": args.copy_length, "int8": args.int8,
            "chat": chat}
    out = Path(args.out)
    write_json(out / f"{args.name}.json", {"meta": meta, "summaries": rows, "records": records})
    (out / f"{args.name}.md").write_text(
        f"`specdec ceiling` run {meta['date']}, greedy, {'' if chat else 'prompts as raw text, '}{args.per_category} prompts per category, "
        f"{args.max_new_tokens} new tokens, copies of <= {args.copy_length} tokens after <= {args.ngram}-gram matches, "
        f"{'int8' if args.int8 else 'float'} draft.\n\n{markdown_table(rows, columns)}\n"
    )
    print(f"wrote {out / args.name}.json, .md")
    return 0

