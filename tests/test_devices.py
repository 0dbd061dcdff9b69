"""Devices and dtypes: models load where they are asked to, every tensor of a generation follows
the model's device, the CPU-only kernels stay on the CPU, and bad placements are one-line errors.

No CUDA device is needed here: a generation run with torch's default device set to `meta` fails
(or produces garbage that the NaN check catches) as soon as any tensor is made without naming the
model's device, which is what would break on a GPU. The checks on a real CUDA device are
`tests/test_devices_gpu.py` (marker `gpu`).
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
import torch
from torch.overrides import TorchFunctionMode

from specdec import ConfigurationError, Decoder, TorchSampler
from specdec import noise
from specdec.cli import main
from specdec.integrations.hf import HFModel
from specdec.integrations.lean_llama import LeanLlama
from specdec.integrations.loading import ModelSource, load_model
from specdec.integrations import projection as projection_module
from specdec.integrations.projection import FloatProjection, projection
from specdec.samplers import Purpose, Site
from tests.models import model_path, real_model
from tests.plugin_tools import TINY_DRAFT, TINY_TARGET, tiny
from tests.test_cli_errors import assert_one_line_error

TARGET, DRAFT = "stories260K", "stories260K-draft"
PROMPT = "Once upon a time"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


# ---------------------------------------------------------------------------- loading
def test_an_explicit_cpu_device_decodes_as_the_default():
    expected = Decoder(real_model(TARGET), draft=real_model(DRAFT)).generate(PROMPT, 24).ids
    for device, dtype in (("cpu", "float32"), (torch.device("cpu"), torch.float32)):
        target = load_model(model_path(TARGET), device=device, dtype=dtype)
        draft = load_model(model_path(DRAFT), device=device, dtype=dtype, require_tokenizer=False)
        assert target.device == draft.device == torch.device("cpu")
        assert Decoder(target, draft=draft).generate(PROMPT, 24).ids == expected


def test_a_model_source_places_the_target_and_the_draft():
    """`ModelSource` is how a path reaches `Decoder`, `draft=` and a proposer's `model` with a
    device and a dtype."""
    decoder = Decoder(
        ModelSource(model_path(TARGET), device="cpu", dtype="bfloat16"),
        draft=ModelSource(model_path(DRAFT), device="cpu", dtype=torch.bfloat16),
        policy="fixed", policy_params={"k": 3},
    )  # fmt: skip
    models = [decoder.target, *decoder.proposer.models]
    assert [next(m.model.parameters()).dtype for m in models] == [torch.bfloat16] * 2
    assert all(isinstance(m.stack, LeanLlama) for m in models)  # the lean forward runs bfloat16 too
    result = decoder.generate(PROMPT, 16)
    assert len(result.ids) == 16 and result.stats.accepted > 0


BAD_PLACEMENTS = [
    ("mps", None, "device 'mps' is not supported: use cpu, cuda or cuda:N"),
    ("banana", None, "device 'banana' is not a device name: use cpu, cuda or cuda:N"),
    ("cpu", "float16", "dtype float16 is not supported on cpu: supported are cpu: float32, bfloat16; cuda: float32, bfloat16, float16"),
    ("cpu", torch.float64, "dtype float64 is not supported on cpu: supported are cpu: float32, bfloat16;"),
    (None, "int8", "dtype 'int8' is not one of float32, bfloat16, float16 (supported per device: cpu: float32, bfloat16;"),
    pytest.param("cuda", None, "device 'cuda' asked for, but torch (", marks=NO_CUDA),
    pytest.param("cuda:1", "bfloat16", "sees no CUDA device here", marks=NO_CUDA),
]


@pytest.mark.parametrize("device, dtype, says", BAD_PLACEMENTS)
def test_unsupported_placements_are_one_line_errors(device, dtype, says):
    with pytest.raises(ConfigurationError) as error:
        load_model(model_path(TARGET), device=device, dtype=dtype)
    assert says in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigurationError, match=re.escape(says)):  # written into a ModelSource: refused there
        ModelSource(model_path(TARGET), device=device, dtype=dtype)


def test_a_model_source_carries_its_own_options():
    with pytest.raises(ConfigurationError, match="^a ModelSource carries its own device, dtype, threads and lean: give them there$"):
        load_model(ModelSource(model_path(TARGET)), dtype="bfloat16")


def test_a_loaded_transformers_model_runs_where_it_is():
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path(TARGET), dtype=torch.float32)
    assert load_model(model, device="cpu", dtype="float32").device == torch.device("cpu")  # its own: fine
    with pytest.raises(ConfigurationError, match=r"asked for dtype bfloat16 \(it is in float32\): move it with model.to"):
        load_model(model, dtype="bfloat16")


@pytest.mark.parametrize(
    "args, says",
    [
        pytest.param(["--device", "cuda"], ("device 'cuda' asked for", "sees no CUDA device"), marks=NO_CUDA),
        (["--device", "xpu"], ("device 'xpu' is not supported",)),
        (["--dtype", "float16"], ("dtype float16 is not supported on cpu", "cuda: float32, bfloat16, float16")),
    ],
)
def test_bad_placements_on_the_command_line(args, says, capsys):
    assert main(["generate", PROMPT, "--target", tiny(TINY_TARGET), "--draft", tiny(TINY_DRAFT), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, *says)


# ---------------------------------------------------------------------------- every tensor on the model's device
@contextmanager
def default_device(device: str):
    """Tensors made without a device land on `device` (torch's default device)."""
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(None)


def runs(decoder: Decoder) -> list[tuple[int, ...]]:
    return [
        decoder.generate(PROMPT, 24, temperature=0).ids,
        decoder.generate(PROMPT, 24, temperature=0.8, top_k=40, seed=3, coupled=False).ids,
        decoder.generate(PROMPT, 24, temperature=0.8, top_p=0.9, seed=3, coupled=True).ids,
    ]


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "transformers"])
@pytest.mark.parametrize("proposer", ["draft", "ouroboros", "prompt-lookup"])
def test_a_generation_makes_its_tensors_on_the_models_device(lean, proposer):
    """Greedy, sampled and coupled, chains and token trees (Ouroboros), both forwards: the same
    output with torch's default device moved away (`meta`), so no tensor came from the default."""
    target = load_model(model_path(TARGET), lean=lean)
    draft = load_model(model_path(DRAFT), lean=lean, require_tokenizer=False) if proposer != "prompt-lookup" else None
    decoder = Decoder(target, proposer=proposer, draft=draft, policy="fixed", policy_params={"k": 3})
    expected = runs(decoder)
    with default_device("meta"):
        assert runs(decoder) == expected


READS = {"tolist", "item", "__int__", "__float__", "__bool__", "__index__", "numpy"}


class DeviceReads(TorchFunctionMode):
    """Counts the calls that copy a tensor's values to the host (each one waits for a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "transformers"])
def test_a_forward_reads_nothing_back_from_the_device(lean):
    """Chains, crops, trees (on a cache and with the prompt) and compaction: the host never waits
    for the device inside a model; the logits stay where the model is."""
    model = load_model(model_path(TARGET), lean=lean)
    with DeviceReads() as reads:
        model.forward(list(range(3, 40)), keep=2)
        model.forward([5, 6, 7], keep=3)
        model.crop(38)
        model.forward_tree([11, 12, 13, 14, 15], [-1, 0, -1, 2, 3], keep=5)
        model.compact(38, [40, 41])
        model.reset()
        model.forward_tree(list(range(3, 20)) + [5, 6], list(range(-1, 16)) + [16, 15], keep=3)
    assert reads.count == 0


@pytest.mark.parametrize("purpose", [Purpose.EMIT, Purpose.COUPLED])
def test_a_draw_reads_the_device_once(purpose):
    weights = torch.softmax(torch.randn(300, generator=torch.Generator().manual_seed(0)), dim=0)
    sampler = TorchSampler(seed=5)
    sampler.begin()
    for position in range(20):
        with DeviceReads() as reads:
            sampler.categorical(weights, Site(position, purpose, 3))
        assert reads.count == 1


def test_the_coupled_draw_on_the_device_is_gumbel_max_on_the_keyed_noise():
    """The coupled draw runs on the weights' device; it is `noise.race` on the same keyed noise,
    zero weights included."""
    generator = torch.Generator().manual_seed(1)
    sampler = TorchSampler(seed=11)
    sampler.begin()
    for position in range(200):
        weights = torch.rand(50, generator=generator) * (torch.rand(50, generator=generator) > 0.3)
        weights[position % 50] += 0.01  # never all zero
        expected = noise.race(weights, noise.exponentials(11, 0, position, int(Purpose.COUPLED), size=50))
        assert sampler.categorical(weights, Site(position, Purpose.COUPLED)) == expected


# ---------------------------------------------------------------------------- CPU-only kernels
def test_projections_off_the_cpu_use_torch_matmul_and_time_nothing(monkeypatch):
    def no_timing(*args, **kwargs):
        raise AssertionError("a GEMM plan was looked up for weights that are not on the CPU")

    monkeypatch.setattr(projection_module, "kernel_plan", no_timing)
    layers = [torch.nn.Linear(64, 32, bias=False, device="meta") for _ in range(3)]
    fused = projection(*layers)
    assert isinstance(fused, FloatProjection) and {rung.kernel for rung in fused.plan} == {"linear"}
    assert fused(torch.empty(5, 64, device="meta")).shape == (5, 96)


def test_an_int8_draft_is_refused_off_the_cpu():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)  # structure only: never run
    with pytest.raises(ConfigurationError, match=r"^an int8 draft runs on the CPU only; .* is on meta$"):
        HFModel(model).quantized()
