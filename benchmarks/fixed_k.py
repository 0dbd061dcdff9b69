"""Fixed draft length k = 1..8 vs target-only decoding on the default pair, per Spec-Bench category.

Greedy, one run: every prompt is decoded by target-only and by each k in turn. For each category the
script also measures the models' step costs at that category's context length and predicts the
speedup from the rounds and draft forwards the run saw, pricing forwards by the measured cost
ratios and the target-only run's seconds per token (see specdec/bench/costs.py); the
measured/predicted ratio shows what the loop costs beyond its forwards.

    python benchmarks/fixed_k.py --per-category 3 --max-new-tokens 96 --out bench-out/fixed_k
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

import torch

from specdec import Decoder
from specdec.bench.costs import measure_prefill, measure_step_costs
from specdec.bench.methods import SpecdecMethod
from specdec.bench.prompts import load_spec_bench
from specdec.bench.report import markdown_table, plot_speedups, print_table, write_json
from specdec.bench.runner import run_benchmark, summarize
from specdec.defaults import default_draft, default_target
from specdec.integrations.loading import load_model
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer

EXTRA = (
    ("predicted", "predicted", "{:.2f}x"),
    ("measured_over_predicted", "measured/pred", "{:.2f}"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-category", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--ks", default="1,2,3,4,5,6,7,8")
    parser.add_argument("--categories", default=None, help="comma-separated subset")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="bench-out/fixed_k")
    args = parser.parse_args()
    out = Path(args.out)
    ks = [int(k) for k in args.ks.split(",")]

    target = load_model(default_target(), threads=args.threads)
    draft = load_model(default_draft(), threads=args.threads)
    baseline = Decoder(target)
    methods = [SpecdecMethod("target-only", baseline)]
    methods += [SpecdecMethod(f"fixed k={k}", Decoder(target, proposer=DraftModelProposer(draft), policy=FixedPolicy(k))) for k in ks]
    prompts = load_spec_bench(categories=args.categories.split(",") if args.categories else None, per_category=args.per_category)
    encode = lambda text: baseline.encode(text, chat=True)  # noqa: E731
    records = run_benchmark(methods, prompts, encode, max_new_tokens=args.max_new_tokens)
    summaries = summarize(records, "target-only")

    # step costs per category, at that category's first prompt + half the generation
    costs = {}
    for category in dict.fromkeys(p.category for p in prompts):
        ids = encode(next(p.text for p in prompts if p.category == category))
        context = ids + ids[-1:] * (args.max_new_tokens // 2)
        costs[category] = measure_step_costs(target, draft, context, max_width=max(ks) + 1)
    prefills = {p.question_id: measure_prefill(target, draft, encode(p.text)) for p in prompts}
    rows = []
    for s in summaries:
        row = s.to_dict()
        row["predicted"] = row["measured_over_predicted"] = float("nan")
        if s.method.startswith("fixed") and s.category != "all":
            k = int(s.method.split("=")[1])
            base = {(r.question_id, r.repeat): r for r in records if r.method == "target-only" and r.category == s.category}
            spec = [r for r in records if r.method == s.method and r.category == s.category]
            predicted = 0.0
            for r in spec:
                b = base[r.question_id, r.repeat]
                predicted += costs[s.category].predicted_seconds(
                    b.run.seconds, b.tokens, r.run.rounds, r.run.draft_forwards, k, prefills[r.question_id]
                )
            base_rate = sum(b.tokens for b in base.values()) / sum(b.run.seconds for b in base.values())
            row["predicted"] = sum(r.tokens for r in spec) / predicted / base_rate
            row["measured_over_predicted"] = s.speedup / row["predicted"]
        rows.append(row)
    rows.sort(key=lambda r: (r["category"] == "all", r["category"], r["method"] != "target-only", r["method"]))
    columns = (*__import__("specdec.bench.report", fromlist=["COLUMNS"]).COLUMNS, *EXTRA)
    print_table(rows, "fixed k vs target-only (greedy)", columns)
    cost_rows = [
        {"category": cat, "target_1": c.target[0] * 1e3, "target_k": " / ".join(f"{t * 1e3:.0f}" for t in c.target),
         "draft_1": c.draft[0] * 1e3, "ratio": c.cost_ratio}
        for cat, c in costs.items()
    ]
    cost_cols = (("category", "category", "{}"), ("target_1", "target 1-token ms", "{:.1f}"),
                 ("target_k", "target n=1..9 tokens ms", "{}"), ("draft_1", "draft 1-token ms", "{:.1f}"), ("ratio", "c", "{:.2f}"))
    print_table(cost_rows, "step costs", cost_cols)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "prompts_per_category": args.per_category,
        "max_new_tokens": args.max_new_tokens,
    }
    write_json(out / "fixed_k.json", {"meta": meta, "rows": rows, "costs": cost_rows})
    (out / "fixed_k.md").write_text(
        f"Run {meta['date']} on {meta['machine']}, torch {meta['torch']}; {args.per_category} prompts per category, "
        f"{args.max_new_tokens} new tokens, greedy.\n\n{markdown_table(rows, columns)}\n\nStep costs:\n\n{markdown_table(cost_rows, cost_cols)}\n"
    )
    plot_speedups(summaries, out / "fixed_k.png", "fixed k vs target-only, greedy, default pair", "target-only")
    print(f"wrote {out}/fixed_k.json, fixed_k.md, fixed_k.png")


if __name__ == "__main__":
    main()
