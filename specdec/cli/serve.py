"""`specdec serve`: vLLM's OpenAI-compatible server with a specdec policy and proposer."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from specdec.cli.options import add_model_options, add_strategy_options
from specdec.cli.parser import positive_int
from specdec.cli.values import parse_params, typed_params
from specdec.defaults import default_draft, default_target
from specdec.errors import ConfigurationError
from specdec.plugins import registry


def port(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return value


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the target through vLLM's OpenAI-compatible server, drafting with a policy and proposer",
        description="Start vLLM's OpenAI-compatible server (/v1/completions, /v1/chat/completions, streaming) on the "
        "target, with specdec's proposer under the length policy driving vLLM's speculative decoding (--target-only: "
        "the same server without speculation). Waits until the server answers, prints its URL on stdout, and serves "
        "until interrupted (Ctrl-C or SIGTERM stop vLLM and every process it started). Needs the vllm extra. "
        "Options after `--` go to vLLM's server unchanged (those of `vllm serve`).",
    )
    add_model_options(parser, device=False)  # vLLM runs on the device its build is for
    served = {  # what the shared model options mean when vLLM loads and runs the target
        "target": "target model directory, safetensors or GGUF (default: the embedded SmolLM2-135M-Instruct)",
        "threads": "CPU cores vLLM's worker runs on, 0 to N-1 (VLLM_CPU_OMP_THREADS_BIND; default: vLLM's choice)",
        "dtype": "weights dtype vLLM runs the target in (its --dtype; default float32)",
    }
    for action in parser._actions:
        action.help = served.get(action.dest, action.help)
    add_strategy_options(parser)
    group = parser.add_argument_group("server")
    group.add_argument("--num-speculative-tokens", type=positive_int, default=8,
                       help="the most tokens vLLM reserves for one request's draft; the policy may draft fewer (default 8)")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    group.add_argument("--port", type=port, default=8000, help="TCP port (default 8000)")
    group.add_argument("--served-model-name", default=None, help="the model name clients send (default: the target directory's name)")
    group.add_argument("--max-model-len", type=positive_int, default=None, help="longest prompt + output in tokens (default: the model's)")
    group.add_argument("--max-num-seqs", type=positive_int, default=None, help="requests decoded at once (default: vLLM's)")
    group.add_argument("--compile", action="store_true",
                       help="let vLLM compile the model (faster steps, minutes longer to start); default: eager mode")
    group.add_argument("--start-timeout", type=positive_int, default=900, help="seconds to wait for the server to answer (default 900)")
    group.add_argument("--quiet", action="store_true", help="keep vLLM's log off stderr (its last lines still explain a failed start)")
    group.add_argument("--print-command", action="store_true",
                       help="print the command that starts vLLM's server (this Python running its server module) and exit without starting anything")
    parser.add_argument("vllm_args", nargs="*", metavar="-- VLLM_OPTION",
                        help="options passed to vLLM's server unchanged, after `--`: those of `vllm serve` (e.g. -- --max-num-batched-tokens 2048)")
    parser.set_defaults(run=run)


def speculative(args: argparse.Namespace) -> dict[str, Any] | None:
    """The `speculative_config` the options ask for (None with --target-only), every name and
    value checked before anything starts, with --target-only too."""
    from specdec.integrations.vllm import speculative_config

    reg = registry()
    proposer, policy = reg.get("proposer", args.proposer), reg.get("policy", args.policy)
    uses_draft = proposer.uses_draft_model or policy.uses_draft_model
    if args.draft and not uses_draft and not args.target_only:
        raise ConfigurationError(f"neither proposer {args.proposer!r} nor policy {args.policy!r} uses a draft model; drop --draft")
    reserved = ("model",) if uses_draft else ()
    proposer_params = typed_params(reg, "proposer", args.proposer, parse_params(args.proposer_param), reserved=reserved)
    policy_params = typed_params(reg, "policy", args.policy, parse_params(args.policy_param), reserved=reserved)
    if args.target_only:
        if not policy.uses_draft_model:
            policy.build(policy_params)  # its values' ranges, which only building checks
        return None
    return speculative_config(
        policy=args.policy, proposer=args.proposer, draft=(args.draft or default_draft()) if uses_draft else None,
        num_speculative_tokens=args.num_speculative_tokens, policy_params=policy_params, proposer_params=proposer_params,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from specdec.integrations.vllm import server, vllm_model_dir

    config = speculative(args)
    if args.vllm_args and not any(a.startswith("-") for a in args.vllm_args[:1]):
        raise ConfigurationError(f"unexpected argument {args.vllm_args[0]!r}: vLLM's options go after `--`, each starting with -")
    if not args.print_command:
        if not server.vllm_installed():
            raise ConfigurationError(f"specdec serve runs vLLM, which is not installed: {server.INSTALL_HINT}")
        server.check_port_free(args.host, args.port)
    target = args.target or default_target()
    command = server.serve_command(
        vllm_model_dir(target), config, host=args.host, port=args.port,
        served_model_name=args.served_model_name or server.model_name(target), dtype=args.dtype,
        max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs, eager=not args.compile, extra=args.vllm_args,
    )  # fmt: skip
    if args.print_command:
        print(shlex.join(command))
        return 0
    env = dict(os.environ)
    if args.threads is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{args.threads - 1}"
    base_url = server.url(args.host, args.port)
    process = server.Server(command, base_url, env=env, log=None if args.quiet else sys.stderr)
    undo = server.interrupt_on_sigterm()
    try:
        process.start()
        seconds = process.wait_ready(args.start_timeout)
        what = "target only" if config is None else f"policy {args.policy}, proposer {args.proposer}"
        print(f"specdec: vLLM answers after {seconds:.0f} s ({what}); Ctrl-C stops it", file=sys.stderr)
        print(base_url, flush=True)
        code = process.wait()  # vLLM exiting by itself (it failed): report it
        raise server.ServerError(f"vLLM's server exited with code {code}: {process.reason()}")
    except KeyboardInterrupt:
        return 0
    finally:
        process.stop()
        undo()
