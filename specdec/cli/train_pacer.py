"""`specdec train-pacer`: collect acceptance data for a draft/target pair and train PACER's pre-verifier."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

import torch

from specdec.cli.parser import non_negative_float, non_negative_int, positive_int, seed
from specdec.errors import ConfigurationError

EVALUATION_ONLY = ("spec_bench.jsonl",)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-pacer",
        help="train PACER's pre-verifier for a draft/target pair",
        description="Generate the target's greedy continuations of training prompts, label every position's greedy "
        "acceptance by teacher forcing (cached to OUT/features.safetensors), train the pre-verifier on censored labels, "
        "choose block size and threshold for tokens/s on a dev split (simulated with measured step costs) and report "
        "held-out AUC and accuracy. Use the result with --policy pacer --policy-param path=OUT.",
    )
    models = parser.add_argument_group("models")
    models.add_argument("--target", help="target model directory (default: the embedded SmolLM2-135M-Instruct)")
    models.add_argument("--draft", help="draft model directory (default: the embedded 4-layer SmolLM2 draft)")
    models.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    models.add_argument("--int8-draft", action="store_true",
                        help="time the draft step in int8 (as used with --proposer-param int8=true), so that the threshold "
                        "is tuned for that draft's cost (features still come from the float draft)")
    data = parser.add_argument_group("data")
    data.add_argument("--prompts", help="JSONL (question/prompt/text/turns field) or plain text, one prompt a line "
                      "(default: data/gsm8k_train.jsonl beside the models directory)")
    data.add_argument("--num-prompts", type=non_negative_int, default=160, help="prompts drawn from --prompts (default 160)")
    data.add_argument("--builtin-prompts", type=non_negative_int, default=160,
                      help="built-in chat prompts added: stories, emails, code, summaries, ... (default 160; 0 = none)")
    data.add_argument("--max-new-tokens", type=positive_int, default=96, help="continuation length per prompt (default 96)")
    data.add_argument("--batch-size", type=positive_int, default=16, help="sequences per generation batch (default 16)")
    data.add_argument("--generation-dtype", choices=["bfloat16", "float32"], default="bfloat16",
                      help="dtype of the target copy that generates the continuations (labels always use the target "
                      "as loaded, float32); default bfloat16, several times faster on CPUs with bf16 units")
    data.add_argument("--no-chat", action="store_true", help="do not wrap prompts in the chat template")
    data.add_argument("--recollect", action="store_true", help="ignore an existing feature cache")
    training = parser.add_argument_group("training")
    training.add_argument("--arch", choices=["mlp", "attention"], default="mlp", help="network (default mlp)")
    training.add_argument("--width", type=positive_int, default=32, help="projection width d (default 32)")
    training.add_argument("--hidden-rank", type=non_negative_int, default=8,
                          help="rank through which the draft's hidden state enters (default 8; 0 = scalars only)")
    training.add_argument("--embedding-rank", type=non_negative_int, default=0,
                          help="rank of the drafted token's embedding code (default 0: not an input)")
    training.add_argument("--epochs", type=positive_int, default=3, help="passes over the training rounds (default 3)")
    training.add_argument("--lr", type=non_negative_float, default=1e-3, help="AdamW peak learning rate (default 1e-3)")
    training.add_argument("--reject-weight", type=non_negative_float, default=1.0, help="BCE weight of rejections (default 1)")
    training.add_argument("--max-draft", type=positive_int, default=24, help="hard cap per round (default 24)")
    training.add_argument("--block-sizes", default="1,2,3,4", help="block sizes tried on dev (default 1,2,3,4)")
    training.add_argument("--seed", type=seed, default=0, help="seed of prompt sampling, splits and training (default 0)")
    parser.add_argument("--out", default="pacer-out", help="output directory (default pacer-out/)")
    parser.set_defaults(run=run)


def read_prompts(path: str | Path, count: int | None = None, seed: int = 0, *, training: bool = True) -> list[str]:
    """The prompts of a plain-text file (one a line) or a JSONL file (lines starting with `{`).

    For training (`training=True`), the evaluation set is refused, repeated prompts are kept
    once and `count` of them are drawn (seeded); otherwise every prompt is kept, in file order.
    A missing or unreadable file and a line of bad JSON are one-line errors."""
    path = Path(path)
    if training and path.name in EVALUATION_ONLY:
        raise ConfigurationError(f"{path.name} is the evaluation set: training on it would inflate every benchmark")
    if not path.exists():
        raise ConfigurationError(f"prompt file {str(path)!r} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as error:
        raise ConfigurationError(f"cannot read the prompt file {str(path)!r}: {error}") from None
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row: object = line
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigurationError(f"{path} line {number} is not valid JSON: {error.msg}") from None
        prompts.append(_prompt_of(row, path))
    prompts = [p for p in (dict.fromkeys(prompts) if training else prompts) if p.strip()]
    if count is not None and count < len(prompts):
        prompts = random.Random(seed).sample(prompts, count)
    return prompts


def _prompt_of(row: object, path: Path) -> str:
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        for key in ("question", "prompt", "text", "instruction"):
            if isinstance(row.get(key), str):
                return row[key]
        if isinstance(row.get("turns"), list) and row["turns"]:
            return str(row["turns"][0])
    raise ConfigurationError(f"{path}: a line has no question/prompt/text/instruction/turns field: {str(row)[:80]}")


def run(args: argparse.Namespace) -> int:
    from specdec.defaults import default_draft, default_target, models_dir
    from specdec.strategies.policies.pacer.collect import PacerData, collect
    from specdec.strategies.policies.pacer.prompts import builtin_prompts
    from specdec.strategies.policies.pacer.train import TrainSettings
    from specdec.strategies.policies.pacer.tune import fit

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    target_path = args.target or default_target()
    draft_path = args.draft or default_draft()
    prompt_file = args.prompts or str(models_dir().parent / "data" / "gsm8k_train.jsonl")
    prompts = read_prompts(prompt_file, args.num_prompts, args.seed) if args.num_prompts else []
    prompts += builtin_prompts(args.builtin_prompts, seed=args.seed) if args.builtin_prompts else []
    if len(prompts) < 3:
        raise ConfigurationError(f"need at least 3 training prompts, got {len(prompts)}")
    out = Path(args.out)
    cache = out / "features.safetensors"
    key = hashlib.sha256(json.dumps([prompts, args.max_new_tokens, not args.no_chat, Path(target_path).name,
                                     Path(draft_path).name, args.max_draft] + (["int8"] if args.int8_draft else [])).encode()).hexdigest()[:16]
    data = None
    if cache.is_file() and not args.recollect:
        data = PacerData.load(cache)
        if data.meta.get("key") != key:
            print(f"{cache} was collected for other prompts or models: collecting again")
            data = None
        else:
            print(f"reusing {len(data)} cached positions from {cache}")
    draft = None
    if data is None or args.embedding_rank:
        from specdec.integrations.loading import load_model

        draft = load_model(draft_path)
    if data is None:
        from specdec.integrations.loading import load_model

        target = load_model(target_path)
        print(f"collecting: {len(prompts)} prompts x up to {args.max_new_tokens} tokens with {target.name} / {draft.name}")
        data = collect(
            target, draft, prompts, max_new_tokens=args.max_new_tokens, chat=not args.no_chat, batch_size=args.batch_size,
            generation_dtype=getattr(torch, args.generation_dtype), max_draft=args.max_draft,
            cost_draft=draft.quantized() if args.int8_draft else None,
        )
        data.meta["key"] = key
        data.meta["collect_seconds"] = round(time.perf_counter() - started, 1)
        data.save(cache)
        print(f"{len(data)} positions from {data.sequences} sequences, acceptance {data.accepted.float().mean():.3f}; "
              f"cached in {cache} ({data.meta['collect_seconds']:.0f}s)")
    try:
        blocks = tuple(int(b) for b in args.block_sizes.split(","))
    except ValueError:
        raise ConfigurationError(f"--block-sizes is a comma-separated list of integers, got {args.block_sizes!r}") from None
    settings = TrainSettings(
        arch=args.arch, width=args.width, hidden_rank=args.hidden_rank, embedding_rank=args.embedding_rank, epochs=args.epochs, lr=args.lr,
        reject_weight=args.reject_weight, max_draft=args.max_draft, block_sizes=blocks, seed=args.seed,
    )
    embedding = None
    if args.embedding_rank:
        from specdec.strategies.policies.pacer.drafts import draft_embedding

        embedding = draft_embedding(draft)
    result = fit(data, settings, embedding=embedding)
    result.network.save_pretrained(out)
    report = {"metrics": result.metrics, "simulation": result.simulation, "seconds": round(time.perf_counter() - started, 1)}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _summary(result, out, report["seconds"])
    return 0


def _summary(result, out: Path, seconds: float) -> None:
    m, sim = result.metrics, result.simulation
    config = result.network.config
    token, block = m["test_token"], m["test_block"]
    best, fixed_k = sim["test_pacer"], sim["test_best_fixed_k"]
    fixed = sim["test_fixed"][fixed_k]
    print(f"held-out ({m['sequences']['test']} sequences): token AUC {token['auc']:.3f}, accuracy {token['accuracy']:.3f} "
          f"(acceptance rate {token['acceptance_rate']:.3f}); block AUC {block['auc']:.3f}, accuracy {block['accuracy']:.3f}")
    print(f"chosen on dev for tokens/s: block_size {config.block_size}, threshold {config.threshold:.2f} "
          f"(pre-verifier {m['seconds_per_block_score'][config.block_size] * 1e3:.2f} ms per block)")
    print(f"simulated held-out speedup over target-only: pacer {best['speedup']:.2f}x (mean drafted "
          f"{best['mean_drafted']:.2f}, accepted {best['mean_accepted']:.2f}) vs best fixed k={fixed_k} {fixed['speedup']:.2f}x")
    print(f"wrote {out}/config.json, {out}/model.safetensors, {out}/report.json in {seconds:.0f}s; "
          f"use it with --policy pacer --policy-param path={out}")
