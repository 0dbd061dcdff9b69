"""`specdec bench --engine vllm` end to end at a tiny size: the tiny pair (its target served with
heads padded for vLLM's CPU attention), two categories of two short prompts, 12 tokens, one and two
requests in flight, vLLM without speculation, vLLM's n-gram lookup and two specdec methods (one
engine for both). The run file, the plot and the page are written and agree with each other:
every summary is the sum of its waves, `all` the sum of the categories, greedy output is as long
under every method (the same tokens), and the page regenerated from the run file is the page the
run wrote.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

if importlib.util.find_spec("vllm") is None:  # installed but broken is a failure, not a skip
    pytest.skip("vLLM is not installed (pip install torch==2.13.0 -e '.[vllm]', see the README)", allow_module_level=True)

from specdec.bench import page  # noqa: E402
from specdec.cli import main  # noqa: E402
from tests.models import model_path  # noqa: E402
from tests.vllm_tools import padded_heads  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

METHODS = ["target-only", "vllm-ngram:k=2", "fixed:k=2", "auto+prompt-lookup"]
PROMPTS = {
    "story": ["Once upon a time, there was a little girl named Lily.", "The cat sat on the mat and looked at the sun."],
    "dialogue": ["Tom said to his mom, I want to play outside.", "The dog ran to the park. The dog ran to the park. The dog"],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bench")
    target = padded_heads(Path(model_path("stories260K")), root / "stories260K-heads32")
    prompts = root / "prompts.jsonl"
    rows = [{"category": c, "question_id": i, "turns": [t]} for c, texts in PROMPTS.items() for i, t in enumerate(texts)]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, page_path = root / "out", root / "docs" / "vllm.md"
    code = main([
        "bench", "--engine", "vllm", "--target", str(target), "--draft", model_path("stories260K-draft"), "--prompts", str(prompts),
        "--per-category", "2", "--max-new-tokens", "12", "--concurrency", "1,2", "--methods", ";".join(METHODS), "--no-chat",
        "--max-model-len", "256", "--num-speculative-tokens", "4", "--out", str(out), "--page", str(page_path),
    ])  # fmt: skip
    assert code == 0
    return {"out": out, "page": page_path, "file": json.loads((out / "bench.json").read_text())}


def test_every_method_category_and_concurrency_is_summarized_from_its_waves(run):
    meta, summaries, waves = run["file"]["meta"], run["file"]["summaries"], run["file"]["waves"]
    assert meta["engine"] == "vllm" and meta["concurrency"] == [1, 2] and meta["methods"] == METHODS
    assert set(meta["engines"]) == {"target-only", "vllm-ngram:k=2", "specdec"}  # specdec's methods share one engine
    keys = {(s["method"], s["category"], s["concurrency"]) for s in summaries}
    assert keys == {(m, c, level) for m in METHODS for c in [*PROMPTS, "all"] for level in (1, 2)}
    for s in summaries:
        mine = [w for w in waves if w["method"] == s["method"] and w["concurrency"] == s["concurrency"] and s["category"] in ("all", w["category"])]
        assert s["tokens"] == sum(w["tokens"] for w in mine) and s["requests"] == sum(w["requests"] for w in mine) == 2 * len(mine)
        assert s["seconds"] == pytest.approx(sum(w["seconds"] for w in mine))
        assert s["tokens_per_second"] == pytest.approx(s["tokens"] / s["seconds"])
        base = next(b for b in summaries if (b["method"], b["category"], b["concurrency"]) == ("target-only", s["category"], s["concurrency"]))
        assert s["speedup"] == pytest.approx(s["tokens_per_second"] / base["tokens_per_second"])
    assert len(waves) == len(METHODS) * len(PROMPTS) * 2  # one repeat


def test_greedy_output_is_as_long_under_every_method_and_specdec_drafts(run):
    summaries = run["file"]["summaries"]
    for category in [*PROMPTS, "all"]:
        for level in (1, 2):
            lengths = {s["method"]: s["tokens"] for s in summaries if (s["category"], s["concurrency"]) == (category, level)}
            assert len(set(lengths.values())) == 1, f"{category} x{level}: {lengths}"
    overall = {(s["method"], s["concurrency"]): s for s in summaries if s["category"] == "all"}
    assert math.isnan(overall[("target-only", 1)]["mean_accepted_length"])
    assert overall[("fixed:k=2", 1)]["mean_accepted_length"] > 1.0 and overall[("fixed:k=2", 2)]["acceptance_rate"] > 0


def test_the_plot_and_the_page_come_from_the_run_file(run):
    plot = run["out"] / "bench.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = run["page"].read_text()
    assert "## Overall" in text and "## Speedup per category, 2 at once" in text and "bench.png" in text
    for method in METHODS:
        assert f"`{method}`" in text
    assert page.main([str(run["out"] / "bench.json"), str(run["page"])]) == 0  # the documented command
    assert run["page"].read_text() == text
