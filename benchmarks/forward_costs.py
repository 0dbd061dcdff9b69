"""What one forward costs on this CPU, per number of new tokens, for each way specdec can run it.

Rows: the target through specdec's lean llama forward (the default), through transformers' own
decoder stack (`lean=False`), and transformers' complete `LlamaForCausalLM.forward` with a
`DynamicCache` (what `model.generate` and assisted generation run); then the draft in float32
and int8. Every (row, width) is timed once per sweep, the sweeps repeat and the median is kept
(`specdec.timing.sweep_seconds`), after a context of `--context` tokens.

    python benchmarks/forward_costs.py --context 300 --repeats 11 --out bench-out
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch

from specdec.timing import sweep_seconds
from specdec.defaults import default_draft, default_target
from specdec.integrations.base import ModelOutput
from specdec.integrations.loading import load_model


class TransformersForward:
    """The complete transformers forward with its own `DynamicCache`, behind `forward`/`crop`."""

    def __init__(self, model) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)

    def forward(self, tokens: Sequence[int], *, keep: int = 1, hidden: bool = False) -> ModelOutput:
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(tokens)]), past_key_values=self.cache, use_cache=True, logits_to_keep=keep)
        return ModelOutput(logits=out.logits[0])

    def crop(self, length: int) -> None:
        drop = self.cache.get_seq_length() - length
        if drop > 0:
            self.cache.crop(-drop)  # transformers 5 takes a negative count of tokens to remove


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context", type=int, default=300, help="tokens already cached (default 300)")
    parser.add_argument("--widths", default="1,2,3,4,5,6,8,9,12,17", help="new tokens per forward")
    parser.add_argument("--repeats", type=int, default=11, help="sweeps (default 11)")
    parser.add_argument("--out", default=None, help="directory for forward_costs.json / .md")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    generator = torch.Generator().manual_seed(0)
    lean = load_model(default_target())
    context = torch.randint(100, lean.vocab_size, (args.context,), generator=generator).tolist()
    plain = load_model(default_target(), lean=False)
    draft = load_model(default_draft())
    rows = {
        "target, specdec lean forward": (lean, widths),
        "target, transformers decoder stack": (plain, widths),
        "target, transformers LlamaForCausalLM.forward": (TransformersForward(plain.model), widths),
        "draft fp32, lean": (draft, [1, 4]),
        "draft int8, lean": (draft.quantized(), [1, 4]),
    }
    seconds = sweep_seconds(rows, context, args.repeats)
    lines = [f"Forward cost in ms after {args.context} cached tokens (median of {args.repeats} sweeps)", "",
             "| forward | " + " | ".join(f"{w} tok" for w in widths) + " |", "|---|" + "---|" * len(widths)]
    for name, (_, ws) in rows.items():
        cells = {w: s for w, s in zip(ws, seconds[name])}
        lines.append(f"| {name} | " + " | ".join(f"{cells[w] * 1e3:.1f}" if w in cells else "" for w in widths) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "forward_costs.md").write_text(text + "\n", encoding="utf-8")
        data = {name: dict(zip(ws, seconds[name])) for name, (_, ws) in rows.items()}
        (out / "forward_costs.json").write_text(json.dumps({"context": args.context, "seconds": data}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
