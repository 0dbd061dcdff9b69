"""Paired comparisons (`specdec compare`, `bench --compare`): exact ratios and intervals that resample prompts."""

from __future__ import annotations

import json

import pytest

from specdec.bench.compare import RunTiming, compare, timings_from_json
from specdec.cli import main
from specdec.errors import ConfigurationError


def timing(method: str, category: str, question: int, repeat: int, seconds: float, tokens: int = 10) -> RunTiming:
    return RunTiming(method, category, question, repeat, tokens, seconds)


def worked_example() -> list[RunTiming]:
    """Two prompts in "a", one in "b"; the new method stalls once (9 s) on prompt 1."""
    return [
        timing("ref", "a", 1, 0, 2.0), timing("ref", "a", 1, 1, 2.5),
        timing("new", "a", 1, 0, 9.0), timing("new", "a", 1, 1, 1.0),
        timing("ref", "a", 2, 0, 3.0), timing("ref", "a", 2, 1, 3.0),
        timing("new", "a", 2, 0, 4.0), timing("new", "a", 2, 1, 6.0),
        timing("ref", "b", 3, 0, 1.0), timing("ref", "b", 3, 1, 1.2),
        timing("new", "b", 3, 0, 0.8), timing("new", "b", 3, 1, 0.5),
    ]


def test_ratios_use_each_prompts_fastest_repeat():
    rows = {row.category: row for row in compare(worked_example(), "new", "ref")}
    a, b, every = rows["a"], rows["b"], rows["all"]
    # fastest repeats: a: new 1.0 + 4.0 s, ref 2.0 + 3.0 s (equal tokens, so speed = inverse time)
    assert a.ratio == pytest.approx((2.0 + 3.0) / (1.0 + 4.0))
    assert a.prompts == 2 and a.median == pytest.approx((2.0 + 0.75) / 2) and a.worst == pytest.approx(0.75)
    assert b.ratio == pytest.approx(1.0 / 0.5) and b.prompts == 1
    assert b.low == b.high == pytest.approx(2.0)  # one prompt: every resample is that prompt
    assert every.ratio == pytest.approx((2.0 + 3.0 + 1.0) / (1.0 + 4.0 + 0.5))
    for row in rows.values():
        assert row.low <= row.ratio <= row.high
    # prompt 1 alone gives 2.0, prompt 2 alone 0.75: resampling "a" reaches both extremes
    assert a.low == pytest.approx(0.75) and a.high == pytest.approx(2.0)


def test_the_interval_over_all_prompts_resamples_within_categories():
    """Category x at 2x and y at 0.5x on every prompt: a stratified resample keeps the mix, so the
    pooled ratio cannot move; resampling across categories would swing it widely."""
    runs = []
    for question in range(6):
        category, new = ("x", 1.0) if question < 3 else ("y", 4.0)
        runs += [timing("ref", category, question, 0, 2.0), timing("new", category, question, 0, new)]
    every = next(row for row in compare(runs, "new", "ref") if row.category == "all")
    assert every.ratio == pytest.approx(12.0 / 15.0)
    assert every.low == pytest.approx(every.ratio) and every.high == pytest.approx(every.ratio)


def test_same_seed_same_interval_and_level_widens_it():
    runs = [timing(m, "c", q, 0, s) for q, (r, n) in enumerate([(2, 1), (2, 3), (2, 2.2), (3, 2), (1, 1.5)]) for m, s in (("ref", r), ("new", n))]
    first, again = compare(runs, "new", "ref"), compare(runs, "new", "ref")
    assert first == again
    narrow = compare(runs, "new", "ref", level=0.5)[0]
    assert narrow.low >= first[0].low and narrow.high <= first[0].high and first[0].high > first[0].low


def test_unknown_methods_and_bad_levels_are_refused():
    with pytest.raises(ConfigurationError, match="'nope' is not in this run.*new, ref"):
        compare(worked_example(), "nope", "ref")
    with pytest.raises(ConfigurationError, match="level"):
        compare(worked_example(), "new", "ref", level=1.5)
    with pytest.raises(ConfigurationError, match="not a specdec bench result"):
        timings_from_json({"summaries": []})


def test_the_command_reads_a_saved_run(tmp_path, capsys):
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"records": [
        {"method": t.method, "category": t.category, "question_id": t.question_id, "repeat": t.repeat,
         "tokens": t.tokens, "seconds": t.seconds, "rounds": 1} for t in worked_example()
    ]}))
    table = tmp_path / "table.md"
    assert main(["compare", str(saved), "--pair", "new", "ref", "--out", str(table)]) == 0
    text = table.read_text()
    assert "| new | ref | a | 2 | 1.00 | 0.75 | 2.00 | 1.38 | 0.75 |" in text
    assert "| new | ref | all | 3 | 1.09 |" in text
    assert main(["compare", str(tmp_path / "missing.json"), "--pair", "new", "ref"]) == 2
    saved.write_text("not json")
    assert main(["compare", str(saved), "--pair", "new", "ref"]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_bench_refuses_to_compare_a_method_it_does_not_run(capsys):
    """Checked before any model loads (a typo would otherwise surface after the whole run)."""
    assert main(["bench", "--methods", "target-only;svip", "--compare", "svip", "fixed", "--target", "/nonexistent"]) == 2
    assert "not benchmarked: fixed" in capsys.readouterr().err


@pytest.mark.slow
def test_a_bench_run_saves_its_comparisons_and_every_runs_timings(tmp_path):
    """End to end on the default pair: `bench --compare` and `compare` on the saved run agree."""
    from tests.models import model_path

    models = ["--target", model_path("smollm2-135m-instruct"), "--draft", model_path("smollm2-draft")]
    assert main(["bench", *models, "--categories", "qa", "--per-category", "2", "--max-new-tokens", "6", "--repeats", "2",
                 "--methods", "target-only;fixed:k=2", "--compare", "fixed:k=2", "target-only",
                 "--out", str(tmp_path), "--name", "run"]) == 0
    saved = json.loads((tmp_path / "run.json").read_text())
    assert [(c["category"], c["prompts"]) for c in saved["comparisons"]] == [("qa", 2), ("all", 2)]
    assert len(saved["records"]) == 2 * 2 * 2
    for record in saved["records"]:
        assert record["prompt_tokens"] > 0 and record["tokens"] == 6
        assert {"target_forwards", "draft_forwards", "draft_seconds", "verify_seconds", "overhead_seconds"} <= set(record)
    assert "Paired comparisons" in (tmp_path / "run.md").read_text()
    # what it ran on: the CPU and the GEMM kernel chosen for the target's LM head (49152 x 576)
    assert saved["meta"]["cpu"] and "49152x576" in saved["meta"]["gemm"]
    assert saved["meta"]["gemm"]["49152x576"] in (tmp_path / "run.md").read_text()
    again = compare(timings_from_json(saved), "fixed:k=2", "target-only")
    assert [c.to_dict() for c in again] == saved["comparisons"]


@pytest.mark.slow
def test_bench_on_a_model_without_a_chat_template_sends_raw_text_and_says_so(tmp_path, capsys):
    from tests.models import model_path

    assert main(["bench", "--target", model_path("stories260K"), "--categories", "qa", "--per-category", "1",
                 "--methods", "target-only", "--max-new-tokens", "4", "--out", str(tmp_path), "--name", "run"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("specdec: note:")]
    assert notes == ["specdec: note: stories260K has no chat template; sending the prompts as raw text (--no-chat)"]
    assert json.loads((tmp_path / "run.json").read_text())["meta"]["chat"] is False
