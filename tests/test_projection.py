"""GEMM kernel choice (integrations/projection.py): every kernel computes F.linear, the plan picks
the fastest measured kernel per row count (padding the rows to a larger rung where that measured
faster), and projections dispatch by that plan.

No test here times anything: the timer is injected, so the choices are checked exactly.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from specdec.errors import ConfigurationError
from specdec.integrations import gemm_plans as G
from specdec.integrations import projection as P
from specdec.integrations.gemm_plans import Rung, describe
from specdec.integrations.projection import KERNELS, FloatProjection, Kernel, choose, measure


def fused_layers():
    return [torch.nn.Linear(24, width, bias=width == 8) for width in (16, 8, 8)]


class Recording:
    """Kernels that record which of them ran, on how many rows (and compute F.linear)."""

    def __init__(self):
        self.used: list[tuple[str, int]] = []

    def kernel(self, name):
        def apply(x, prepared, weight, bias):
            self.used.append((name, x.shape[0]))
            return F.linear(x, weight, bias)

        return Kernel(name, lambda: True, lambda w: None, apply)


@pytest.mark.parametrize("kernel", P.usable_kernels(torch.float32))
@pytest.mark.parametrize("rows", [1, 3, 4, 7, 17, 100])
def test_every_kernel_computes_the_same_product(kernel, rows, monkeypatch):
    monkeypatch.setenv(P.ENVIRONMENT, kernel)
    generator = torch.Generator().manual_seed(rows)
    layers = fused_layers()
    fused = P.projection(*layers)
    assert isinstance(fused, FloatProjection) and fused.plan == (Rung(P.ROW_LADDER[-1], kernel),)
    x = torch.randn(rows, 24, generator=generator)
    expected = torch.cat([F.linear(x, layer.weight, layer.bias) for layer in layers], dim=-1)
    assert torch.allclose(fused(x), expected, atol=1e-5)


def test_the_plan_takes_the_fastest_kernel_at_each_rung_and_merges_runs():
    times = {
        "linear": {1: 1.0, 2: 2.0, 4: 5.0, 8: 6.0},
        "mkl-packed": {1: 1.5, 2: 1.9, 4: 2.0, 8: 2.5},
        "onednn": {1: 1.2, 2: 2.5, 4: 3.0, 8: 2.4},
    }
    assert choose(times) == (Rung(1, "linear"), Rung(4, "mkl-packed"), Rung(8, "onednn"))
    assert choose({"onednn": {1: 1.0, 2: 1.0}}) == (Rung(2, "onednn"),)
    assert describe((Rung(1, "linear"), Rung(4, "mkl-packed"), Rung(8, "onednn"))) == (
        "linear for 1 row, mkl-packed for 2-4 rows, onednn from 5 rows"
    )


def test_rows_are_padded_to_a_larger_rung_only_when_it_measured_clearly_faster():
    times = {
        "onednn": {1: 1.0, 2: 1.2, 3: 0.9, 4: 0.97, 6: 0.93},
        "linear": {1: 1.1, 2: 3.0, 3: 3.0, 4: 3.0, 6: 3.0},
    }
    # 1 and 2 rows: 3 rows measured 10% / 25% faster, so they are padded to 3; 4 rows: 6 rows are
    # only 4% faster (< PAD_GAIN), not padded
    assert choose(times) == (Rung(2, "onednn", 3), Rung(6, "onednn"))
    assert describe(choose(times)) == "onednn for 1-2 rows (padded to 3), onednn from 3 rows"


def test_a_padded_product_returns_the_rows_it_was_given(monkeypatch):
    record = Recording()
    monkeypatch.setitem(KERNELS, "onednn", record.kernel("onednn"))
    monkeypatch.setitem(KERNELS, "linear", record.kernel("linear"))
    monkeypatch.setattr(P, "kernel_plan", lambda *shape: (Rung(2, "onednn", 4), Rung(64, "linear")))
    layers = fused_layers()
    fused = P.projection(*layers)
    for rows in (1, 2, 3):
        x = torch.randn(rows, 24, generator=torch.Generator().manual_seed(rows))
        expected = torch.cat([F.linear(x, layer.weight, layer.bias) for layer in layers], dim=-1)
        out = fused(x)
        assert out.shape == expected.shape  # the zero rows' outputs dropped
        assert torch.allclose(out, expected, atol=1e-5)  # the real rows' products (to float rounding)
    assert record.used == [("onednn", 4), ("onednn", 4), ("linear", 3)]


def test_measuring_drops_kernels_twice_as_slow_and_times_per_product(monkeypatch):
    table = {
        "linear": {1: 1.0, 2: 1.0, 3: 3.0},  # 3x the fastest at 3 rows: not timed beyond
        "mkl-packed": {1: 1.1, 2: 2.5},  # 2.5x at 2 rows: dropped
        "onednn": {1: 1.5, 2: 1.0, 3: 1.0},  # left alone after 3 rows
    }
    for name in table:  # kernels that run anywhere (what is timed here is the fake table)
        monkeypatch.setitem(KERNELS, name, Recording().kernel(name))
    calls = []

    def fake_timer(kernel, rows, run):
        out = run()
        assert out.shape == (rows, 8)  # the kernel really ran on a (rows x in) input
        calls.append((kernel, rows))
        return table[kernel][rows] * copies  # a run multiplies every copy once

    copies = min(P.MAX_COPIES, P.COLD_BYTES // (8 * 4 * 4))
    monkeypatch.setattr(P, "ROW_LADDER", (1, 2, 3, 4))
    monkeypatch.setattr(P, "SWEEPS", 2)
    table["onednn"][4] = 1.2  # the kernel left is timed on up the ladder
    times = measure(8, 4, list(table), timer=fake_timer)
    first = [
        ("linear", 1), ("mkl-packed", 1), ("onednn", 1),
        ("linear", 2), ("mkl-packed", 2), ("onednn", 2),
        ("linear", 3), ("onednn", 3),
        ("onednn", 4),
    ]
    assert calls == first * 3  # the first sweep decides what races; two more time all of it again
    assert times["onednn"] == pytest.approx(table["onednn"])  # per product, not per run
    assert choose(times) == (Rung(2, "linear"), Rung(4, "onednn"))


def test_each_kernel_and_rung_keeps_its_fastest_sweep(monkeypatch):
    """A slow moment falls on one sweep, not on one rung: every rung keeps its fastest time."""
    monkeypatch.setitem(KERNELS, "onednn", Recording().kernel("onednn"))
    monkeypatch.setattr(P, "ROW_LADDER", (1, 2, 3))
    monkeypatch.setattr(P, "SWEEPS", 2)
    copies = min(P.MAX_COPIES, P.COLD_BYTES // (8 * 4 * 4))
    sweeps = iter([{1: 5.0, 2: 9.0, 3: 4.0}, {1: 6.0, 2: 3.0, 3: 8.0}, {1: 2.0, 2: 7.0, 3: 9.0}])
    current: dict[int, float] = {}

    def fake_timer(kernel, rows, run):
        if rows == 1:
            current.update(next(sweeps))
        return current[rows] * copies

    assert measure(8, 4, ["onednn"], timer=fake_timer) == {"onednn": {1: 2.0, 2: 3.0, 3: 4.0}}


def test_a_projection_dispatches_by_row_count(monkeypatch):
    record = Recording()
    for name in ("linear", "onednn"):
        monkeypatch.setitem(KERNELS, name, record.kernel(name))
    monkeypatch.setattr(P, "kernel_plan", lambda *shape: (Rung(3, "linear"), Rung(64, "onednn")))
    fused = P.projection(*fused_layers())
    for rows in (1, 3, 4, 64, 65, 500):
        fused(torch.zeros(rows, 24))
    assert record.used == [("linear", 1), ("linear", 3), ("onednn", 4), ("onednn", 64), ("onednn", 65), ("onednn", 500)]


def test_a_shape_is_measured_once_per_process(monkeypatch):
    monkeypatch.setenv(P.ENVIRONMENT, P.FRESH)
    monkeypatch.setattr(G, "process_plans", {})
    measured = []

    def fake_measure(out_features, in_features, kernels, timer=None):
        measured.append((out_features, in_features))
        return {name: {1: float(i)} for i, name in enumerate(kernels)}

    monkeypatch.setattr(P, "measure", fake_measure)
    monkeypatch.setattr(P, "usable_kernels", lambda dtype: ["linear", "onednn"])
    first = P.kernel_plan(40, 24)
    assert P.kernel_plan(40, 24) == first == (Rung(1, "linear"),)
    P.kernel_plan(24, 40)
    assert measured == [(40, 24), (24, 40)]
    assert G.measured_plans() == {(40, 24): first, (24, 40): (Rung(1, "linear"),)}


def test_a_bad_kernel_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(P.ENVIRONMENT, "fastest-please")
    with pytest.raises(ConfigurationError, match="SPECDEC_GEMM='fastest-please': choose auto, fresh or one of linear"):
        P.projection(*fused_layers())


def test_non_float32_weights_use_the_plain_product(monkeypatch):
    monkeypatch.setenv(P.ENVIRONMENT, "auto")
    assert P.kernel_plan(40, 24, torch.bfloat16) == (Rung(P.ROW_LADDER[-1], "linear"),)



class FakeMeasuring:
    """Stands in for `measure`: counts the shapes measured, linear fastest at one row."""

    def __init__(self, monkeypatch, tmp_path):
        self.measured: list[tuple[int, int]] = []
        monkeypatch.setattr(P, "measure", self)
        monkeypatch.setattr(P, "usable_kernels", lambda dtype: ["linear", "onednn"])
        monkeypatch.setattr(G, "process_plans", {})
        monkeypatch.setattr(G, "plan_file", lambda: tmp_path / "cache" / G.PLAN_FILE)
        monkeypatch.delenv(P.ENVIRONMENT, raising=False)

    def __call__(self, out_features, in_features, kernels, timer=None):
        self.measured.append((out_features, in_features))
        return {"linear": {1: 1.0, 4: 2.0}, "onednn": {1: 2.0, 4: 1.0}}

    def new_process(self, monkeypatch):
        monkeypatch.setattr(G, "process_plans", {})


PLAN = (Rung(1, "linear"), Rung(4, "onednn"))


def test_a_measured_plan_is_saved_and_later_processes_read_it(monkeypatch, tmp_path):
    fake = FakeMeasuring(monkeypatch, tmp_path)
    assert P.kernel_plan(40, 24) == PLAN
    fake.new_process(monkeypatch)
    assert P.kernel_plan(40, 24) == PLAN
    assert P.kernel_plan(24, 40) == PLAN
    assert fake.measured == [(40, 24), (24, 40)]  # the second process measured only the new shape
    saved = G.load_saved_plans()
    assert saved[G.machine_key(40, 24, torch.float32, ["linear", "onednn"], P.measuring_method())] == [[1, "linear", 0], [4, "onednn", 0]]
    monkeypatch.setattr(G, "cpu_model", lambda: "another CPU")  # another machine: its own plan
    fake.new_process(monkeypatch)
    P.kernel_plan(40, 24)
    assert fake.measured == [(40, 24), (24, 40), (40, 24)]
    assert len(G.load_saved_plans()) == 3


def test_fresh_measures_in_every_process_and_saves_nothing(monkeypatch, tmp_path):
    fake = FakeMeasuring(monkeypatch, tmp_path)
    monkeypatch.setenv(P.ENVIRONMENT, P.FRESH)
    P.kernel_plan(40, 24)
    fake.new_process(monkeypatch)
    P.kernel_plan(40, 24)
    assert fake.measured == [(40, 24), (40, 24)]
    assert not G.plan_file().exists()


# (file content, what the warning says): each is ignored, measured again and replaced
BAD_PLANS = [
    ("{not json", "ignoring the saved GEMM plans in"),
    ('["a list"]', "not a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "RecursionError"),
    ('{"KEY": [[1, "no-such-kernel", 0]]}', "kernel 'no-such-kernel' is not one of linear, onednn"),
    ('{"KEY": [[4, "linear", 0], [1, "onednn", 0]]}', "the rows are not ascending"),
    ('{"KEY": [[1, "linear", 1]]}', "pad 1 for 1 rows is neither 0 nor a larger row count"),
    ('{"KEY": [[1, "linear", 1e12]]}', "pad 1000000000000.0 for 1 rows"),
    ('{"KEY": [[1, "linear", 200000]]}', "pad 200000 for 1 rows"),
    ('{"KEY": [[1, "linear", 5]]}', "pad 5 for 1 rows"),
    ('{"KEY": [[1, "linear", 1e400]]}', "pad inf for 1 rows"),
    ('{"KEY": [[1e400, "linear", 0]]}', "rows inf is not one of the ladder's row counts"),
    ('{"KEY": [[4.0, "linear", 0]]}', "rows 4.0 is not one of"),
    ('{"KEY": [[true, "linear", 0]]}', "rows True is not one of"),
    ('{"KEY": [[100, "linear", 0]]}', "rows 100 is not one of"),
    ('{"KEY": [[1, "linear"]]}', "a rung is [1, 'linear'], not [rows, kernel, pad]"),
    ('{"KEY": "onednn"}', "expected a list of at most 11 [rows, kernel, pad] rungs"),
    ('{"KEY": [' + ", ".join(['[1, "linear", 0]'] * 12) + "]}", "expected a list of at most 11"),
]


@pytest.mark.parametrize("content, says", BAD_PLANS, ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_a_bad_saved_plan_is_reported_measured_again_and_replaced(monkeypatch, tmp_path, content, says):
    fake = FakeMeasuring(monkeypatch, tmp_path)
    key = G.machine_key(40, 24, torch.float32, ["linear", "onednn"], P.measuring_method())
    G.plan_file().parent.mkdir(parents=True)
    G.plan_file().write_text(content.replace("KEY", key))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        projection = P.FloatProjection([torch.randn(40, 24)])
    assert projection.plan == PLAN and fake.measured == [(40, 24)]
    x = torch.randn(3, 24)
    assert torch.allclose(projection(x), torch.nn.functional.linear(x, projection.weight), atol=1e-5)
    assert any(says in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert G.parse_plan(G.load_saved_plans()[key], ["linear", "onednn"], P.ROW_LADDER) == PLAN


def test_an_oversized_plan_file_is_ignored(monkeypatch, tmp_path):
    fake = FakeMeasuring(monkeypatch, tmp_path)
    G.plan_file().parent.mkdir(parents=True)
    G.plan_file().write_text(" " * (G.MAX_PLAN_FILE + 1) + "{}")
    with pytest.warns(UserWarning, match="larger than"):
        assert P.kernel_plan(40, 24) == PLAN
    assert fake.measured == [(40, 24)]


def test_an_unwritable_cache_is_reported_and_the_plan_still_serves(monkeypatch, tmp_path):
    fake = FakeMeasuring(monkeypatch, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(G, "plan_file", lambda: blocker / G.PLAN_FILE)  # its directory is a file
    with pytest.warns(UserWarning, match="cannot save the GEMM plan"):
        assert P.kernel_plan(40, 24) == PLAN
    assert fake.measured == [(40, 24)]
