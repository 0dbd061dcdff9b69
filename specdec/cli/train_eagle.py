"""`specdec train-eagle`: train an EAGLE head for a target on the target's own outputs."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import attrs
import torch

from specdec.cli.parser import non_negative_float, non_negative_int, output_directory, positive_int, seed

STYLES = ("eagle1", "eagle3")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-eagle",
        help="train an EAGLE draft head for a target on its own outputs",
        description="Answer training prompts with the target (greedy and sampled answers to --prompts and to user turns "
        "the target writes itself from its bare chat template), cache the target's hidden states over them, train a "
        "one-layer head with EAGLE's losses, report its held-out acceptance and save config.json + model.safetensors "
        "in OUT. Every stage is cached under --cache and a rerun resumes where it stopped. Use the result with "
        "--proposer eagle --proposer-param path=OUT.",
    )
    models = parser.add_argument_group("model")
    models.add_argument("--target", help="target model directory (default: the embedded SmolLM2-135M-Instruct)")
    models.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    data = parser.add_argument_group("data")
    data.add_argument("--prompts", help="JSONL (question/prompt/text/turns field) or plain text, one prompt a line "
                      "(default: data/gsm8k_train.jsonl beside the models directory)")
    data.add_argument("--num-prompts", type=non_negative_int, default=400, help="prompts drawn from --prompts (default 400)")
    data.add_argument("--self-prompts", type=non_negative_int, default=400,
                      help="user turns the target writes itself, then answers (default 400; 0 = none)")
    data.add_argument("--samples", type=non_negative_int, default=1,
                      help="sampled answers per prompt, besides the greedy one (default 1)")
    data.add_argument("--max-new-tokens", type=positive_int, default=128, help="answer length at most (default 128)")
    data.add_argument("--prompt-tokens", type=positive_int, default=48, help="self-written prompt length at most (default 48)")
    data.add_argument("--temperature", type=non_negative_float, default=0.8,
                      help="temperature of sampled answers and self-written prompts (default 0.8, top-p 0.95)")
    data.add_argument("--batch-size", type=positive_int, default=16, help="sequences per generation batch (default 16)")
    data.add_argument("--generation-dtype", choices=["bfloat16", "float32"], default="bfloat16",
                      help="dtype of the target copy that generates text (the hidden states always come from the target "
                      "as loaded); default bfloat16, several times faster on CPUs with bf16 units")
    data.add_argument("--no-chat", action="store_true", help="do not wrap prompts in the chat template")
    data.add_argument("--cache", help="directory of the resumable caches (default OUT/cache)")
    training = parser.add_argument_group("head and training")
    training.add_argument("--style", choices=STYLES, default="eagle1",
                          help="eagle1: the final state, scored by the target's LM head rows (default); eagle3: fused "
                          "low/middle/high layers and an own LM head")
    training.add_argument("--draft-vocab", type=non_negative_int, default=8192,
                          help="tokens the head scores, the most frequent in the answers (default 8192; 0 = all)")
    training.add_argument("--intermediate-size", type=non_negative_int, default=0,
                          help="MLP width of the head's layer (default 0: the target's)")
    training.add_argument("--epochs", type=positive_int, default=2, help="passes over the training answers (default 2)")
    training.add_argument("--lr", type=non_negative_float, default=1e-3, help="AdamW peak learning rate (default 1e-3)")
    training.add_argument("--batch-tokens", type=positive_int, default=2048, help="padded positions per step (default 2048)")
    training.add_argument("--held-out", type=non_negative_float, default=0.1, help="share of prompts held out (default 0.1)")
    training.add_argument("--depth", type=positive_int, default=4, help="chain length of the held-out acceptance (default 4)")
    training.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                          help="dtype of the saved weights (default bfloat16: half the size)")
    training.add_argument("--seed", type=seed, default=0, help="seed of prompt sampling, generation and training (default 0)")
    parser.add_argument("--out", default="eagle-out", help="output directory (default eagle-out/)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from specdec.cli.train_pacer import read_prompts
    from specdec.defaults import default_target, models_dir
    from specdec.errors import ConfigurationError
    from specdec.integrations.base import FeatureModel
    from specdec.integrations.loading import load_model
    from specdec.progress import reporting
    from specdec.strategies.policies.pacer.collect import encode_prompts
    from specdec.strategies.proposers.eagle import save_head
    from specdec.strategies.proposers.eagle.config import default_layers
    from specdec.strategies.proposers.eagle.data import Generation, JsonlCache, answer, digest, generator_of, self_written_prompts
    from specdec.strategies.proposers.eagle.features import cache_features
    from specdec.strategies.proposers.eagle.proposer import target_fingerprint
    from specdec.strategies.proposers.eagle.train import TrainSettings, fit

    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    out = output_directory(args.out, "--out")
    cache = output_directory(args.cache or out / "cache", "--cache")
    target_path = args.target or default_target()
    texts, prompt_file = [], args.prompts or str(models_dir().parent / "data" / "gsm8k_train.jsonl")
    if args.num_prompts:
        texts = read_prompts(prompt_file, args.num_prompts, args.seed)
    if len(texts) + args.self_prompts < 2:
        raise ConfigurationError("need at least 2 training prompts (--num-prompts and --self-prompts)")
    target = load_model(target_path)
    if not isinstance(target, FeatureModel):
        raise ConfigurationError(f"the target {target.name!r} does not return its hidden states, which a head is trained on")
    fingerprint = target_fingerprint(target)
    generation = Generation(max_new_tokens=args.max_new_tokens, prompt_tokens=args.prompt_tokens, temperature=args.temperature,
                            batch_size=args.batch_size, dtype=args.generation_dtype)
    settings = TrainSettings(style=args.style, draft_vocab=args.draft_vocab, intermediate_size=args.intermediate_size,
                             epochs=args.epochs, lr=args.lr, batch_tokens=args.batch_tokens, held_out=args.held_out,
                             depth=args.depth, seed=args.seed)
    # what the cached text was made from; not the counts: prompts and answers come in an order that a
    # larger count extends, so a run with more or fewer of them reuses what is cached
    made = digest(fingerprint, not args.no_chat, args.seed, attrs.asdict(generation, filter=lambda field, _: field.name != "batch_size"))
    made_file = digest(made, args.samples, hashlib.sha256(Path(prompt_file).read_bytes()).hexdigest() if texts else "")
    made_self = digest(made, args.samples, "self")
    stages: dict[str, float] = {}
    generator = None
    if args.self_prompts:
        generator = generator_of(target, generation.dtype)
    file_prompts = encode_prompts(target, texts, chat=not args.no_chat) if texts else []
    mark = time.perf_counter()
    self_prompts: list[list[int]] = []
    if args.self_prompts:
        with reporting(f"writing {args.self_prompts} prompts with the target", total=args.self_prompts, unit="prompt") as bar:
            self_prompts = self_written_prompts(target, args.self_prompts, generation, seed=args.seed, advance=bar.advance,
                                                cache=JsonlCache(cache / "self-prompts.jsonl", made), generator=generator)
    jobs = (len(file_prompts) + len(self_prompts)) * (1 + args.samples)
    with reporting(f"answering {len(file_prompts) + len(self_prompts)} prompts ({1 + args.samples} answers each)", total=jobs,
                   unit="answer") as bar:
        generator = generator or generator_of(target, generation.dtype)
        examples = answer(target, file_prompts, "file", args.samples, generation, seed=args.seed, advance=bar.advance,
                          cache=JsonlCache(cache / "answers-file.jsonl", made_file), generator=generator)
        examples += answer(target, self_prompts, "self", args.samples, generation, seed=args.seed + 1, advance=bar.advance,
                           cache=JsonlCache(cache / "answers-self.jsonl", made_self), generator=generator)
    del generator
    stages["generation_seconds"] = round(time.perf_counter() - mark, 1)
    if len({(e.origin, e.prompt) for e in examples}) < 2:
        raise ConfigurationError("fewer than 2 prompts got an answer: nothing to hold out")
    final = target.num_layers
    layers = sorted(set(default_layers(args.style, final)) | {final})
    mark = time.perf_counter()
    with reporting(f"computing the target's states over {len(examples)} answers", total=len(examples), unit="seq") as bar:
        store = cache_features(target, examples, layers, cache / "features", digest(made, layers), advance=bar.advance)
    stages["feature_seconds"] = round(time.perf_counter() - mark, 1)
    prompt_ids = {key: i for i, key in enumerate(dict.fromkeys((e.origin, e.prompt) for e in examples))}
    prompt_of = [prompt_ids[(e.origin, e.prompt)] for e in examples]
    result = fit(target, store, prompt_of, settings, progress=lambda what, total: reporting(what, total=total))
    report = {**result.report, **stages, "data": {"file_prompts": len(file_prompts), "self_prompts": len(self_prompts),
              "answers": len(examples), "tokens": int(store.tokens.numel())}, "seconds": round(time.perf_counter() - began, 1)}
    save_head(result.head, out, target_name=Path(str(target.name)).name, target_fingerprint=fingerprint, report=report,
              dtype=getattr(torch, args.dtype))
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    held = report["held_out"]
    print(f"held-out ({report['sequences']['measured']} greedy answers, {held['chains']} positions): first-token agreement "
          f"{held['first_token_agreement']:.3f}, acceptance by chain position "
          f"{', '.join(f'{r:.2f}' for r in held['acceptance_by_position'])}, mean accepted length "
          f"{held['mean_accepted_length']:.2f} with chains of {held['depth']}")
    print(f"trained on {report['train_tokens']} tokens of {report['sequences']['train']} answers "
          f"(draft vocabulary {report['draft_vocab_size']}, covering {report['draft_vocab_coverage']:.1%} of answer tokens)")
    print(f"wrote {out}/config.json, {out}/model.safetensors, {out}/report.json in {report['seconds']:.0f}s; use it with "
          f"--proposer eagle --proposer-param path={out}")
    return 0
