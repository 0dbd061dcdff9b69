"""`specdec generate --prompts FILE`: every prompt of a file decoded as a batch, printed in prompt
order, each exactly what the decoder gives that prompt alone; and the one-line errors of the
options that choose the prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specdec.cli import main
from specdec.decoder import Decoder
from tests.models import model_path, real_model
from tests.test_cli_errors import assert_one_line_error

PAIR = ["--target", model_path("stories260K"), "--draft", model_path("stories260K-draft")]
PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park", "One day"]
MAX_NEW = 12


def prompt_file(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def alone(prompt: str) -> dict:
    decoder = Decoder(real_model("stories260K"), proposer="draft", policy="fixed", draft=real_model("stories260K-draft"))
    return decoder.generate(prompt, MAX_NEW).to_dict()


@pytest.mark.parametrize("batch_size", [[], ["--batch-size", "2"]], ids=["all", "two"])
def test_json_lines_are_each_prompt_decoded_alone_in_order(tmp_path, capsys, batch_size):
    # JSONL fields and plain lines mix in one file; the prompts come back in file order, a repeated one twice
    lines = [
        json.dumps({"prompt": PROMPTS[0]}), PROMPTS[1], json.dumps({"turns": [PROMPTS[2], "later"]}),
        json.dumps({"question": PROMPTS[3]}), PROMPTS[1],
    ]  # fmt: skip
    args = ["generate", "--prompts", prompt_file(tmp_path, lines), *PAIR, "--max-new-tokens", str(MAX_NEW), "--json", *batch_size]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    prompts = [*PROMPTS, PROMPTS[1]]
    assert [row["index"] for row in rows] == list(range(len(prompts)))
    for row, prompt in zip(rows, prompts):
        expected = alone(prompt)
        assert (row["text"], row["ids"], row["finish_reason"]) == (expected["text"], expected["ids"], expected["finish_reason"])
        assert row["stats"]["generated"] == expected["stats"]["generated"]


def test_plain_text_prints_every_prompt_under_its_header_in_order(tmp_path, capsys):
    args = ["generate", "--prompts", prompt_file(tmp_path, PROMPTS), *PAIR, "--max-new-tokens", str(MAX_NEW)]
    assert main(args) == 0
    captured = capsys.readouterr()
    expected = "".join(f"[prompt {i}]\n{alone(p)['text']}\n\n" for i, p in enumerate(PROMPTS))
    assert captured.out == expected
    statistics = [line for line in captured.err.splitlines() if line.startswith("[")]  # not the loading bars
    assert [line.split(":")[0] for line in statistics] == [f"[prompt {i}" for i in range(len(PROMPTS))] + ["[total"]
    total = sum(alone(p)["stats"]["generated"] for p in PROMPTS)
    assert statistics[-1].startswith(f"[total: {len(PROMPTS)} prompts, {total} tokens in ")


def errors(tmp_path: Path) -> list[tuple[list[str], str]]:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"prompt": "fine"}\n{"prompt": \n', encoding="utf-8")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "one.txt").write_text("Once upon a time\n", encoding="utf-8")
    return [
        (["generate", *PAIR], "give a PROMPT or --prompts FILE"),
        (["generate", "Once", "--prompts", str(empty), *PAIR], "give either a PROMPT or --prompts FILE, not both"),
        (["generate", "Once", "--batch-size", "2", *PAIR], "--batch-size goes with --prompts"),
        (["generate", "--prompts", str(empty), *PAIR], "holds no prompts"),
        (["generate", "--prompts", str(tmp_path / "missing.txt"), *PAIR], "does not exist"),
        (["generate", "--prompts", str(tmp_path), *PAIR], "Is a directory"),
        (["generate", "--prompts", str(binary), *PAIR], "cannot read the prompt file"),
        (["generate", "--prompts", str(bad_json), *PAIR], f"{bad_json} line 2 is not valid JSON"),
        (["generate", "--prompts", str(empty), "--batch-size", "0", *PAIR], "expected an integer >= 1, got '0'"),
        (["generate", "--prompts", str(bad_json.with_name("one.txt")), "--policy", "oracle", *PAIR], "does not take --prompts"),
    ]


@pytest.mark.parametrize("case", range(10))
def test_bad_prompt_options_are_one_line_errors(tmp_path, capsys, case):
    args, says = errors(tmp_path)[case]
    assert main(args) == 2
    assert_one_line_error(capsys.readouterr().err, says)
