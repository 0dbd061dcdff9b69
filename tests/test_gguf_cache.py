"""The GGUF conversion cache under concurrent first runs, a kill mid-conversion, a damaged copy,
an unwritable cache and a full disk (on a tiny GGUF model: `tests/gguf_tools.py`)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from specdec.integrations import gguf_cache
from specdec.integrations.loading import load_model

from specdec.errors import CacheError
from tests.gguf_tools import write_tiny_gguf
from tests.plugin_tools import TINY_TARGET, cli_env, tiny

PROMPT = [1, 403, 407, 261, 378, 432]


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models") / "stories-gguf"
    write_tiny_gguf(directory)
    return directory


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPECDEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "converted"


def logits(model) -> torch.Tensor:
    return model.model(torch.tensor([PROMPT])).logits[0, -1]


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    return logits(load_model(tiny(TINY_TARGET)))


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_copy_is_the_model_and_is_used_again(gguf_dir, cache, reference, capfd):
    first = load_model(gguf_dir)
    assert "converting stories260K.gguf" in capfd.readouterr().err
    assert torch.equal(logits(first), reference)
    again = load_model(gguf_dir)
    assert "converting" not in capfd.readouterr().err
    assert torch.equal(logits(again), reference)
    (copy,) = [name for name in entries(cache) if not name.endswith(".lock")]
    assert entries(cache) == [copy, f"{copy}.lock"]


def test_a_damaged_copy_is_converted_again_with_a_note(gguf_dir, cache, reference, capfd):
    load_model(gguf_dir)
    copy = gguf_cache.copy_path(gguf_dir, gguf_dir / "stories260K.gguf")
    weights = copy / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    capfd.readouterr()
    model = load_model(gguf_dir)
    err = capfd.readouterr().err
    assert f"note: the converted copy in {copy} is damaged ({weights} is truncated" in err
    assert torch.equal(logits(model), reference)
    assert gguf_cache.copy_problem(copy) is None


@pytest.mark.parametrize("where", ["a file", "under /proc"])
def test_an_unwritable_cache_converts_in_memory_with_a_note(gguf_dir, tmp_path, monkeypatch, reference, capfd, where):
    if where == "a file":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        monkeypatch.setenv("SPECDEC_CACHE", str(blocker / "cache"))
    else:
        monkeypatch.setenv("SPECDEC_CACHE", "/proc/specdec-cache")
    model = load_model(gguf_dir)
    err = capfd.readouterr().err
    assert "note: cannot write the conversion cache" in err and "in memory for this run only" in err
    assert err.index("cannot write") < err.index("converting stories260K.gguf")  # noticed before converting
    assert torch.equal(logits(model), reference)


def test_a_full_disk_is_one_error_before_writing(gguf_dir, cache, monkeypatch):
    monkeypatch.setattr(gguf_cache.shutil, "disk_usage", lambda path: _Usage(free=1000))
    with pytest.raises(CacheError, match=r"no room for the converted model in .*: it needs 1 MB and 0 MB are free; free some space"):
        load_model(gguf_dir)
    assert [name for name in entries(cache) if not name.endswith(".lock")] == []


def test_a_disk_filling_while_writing_leaves_nothing_behind(gguf_dir, cache, monkeypatch):
    from transformers import PreTrainedModel

    def fill(self, directory, **kwargs):
        (Path(directory) / "model.safetensors").write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", fill)
    with pytest.raises(CacheError, match="no room for the converted model"):
        load_model(gguf_dir)
    assert [name for name in entries(cache) if not name.endswith(".lock")] == []


class _Usage:
    def __init__(self, free: int) -> None:
        self.free = free


# a first run in a fresh interpreter that waits for GO to exist before loading (so that several
# start loading together), or that stops in the middle of writing the copy when HANG is set
FIRST_RUN = """
import os, sys, time
from pathlib import Path
from specdec.integrations.loading import load_model
if os.environ.get("HANG"):
    from transformers import PreTrainedModel
    save = PreTrainedModel.save_pretrained
    def save_then_hang(self, *args, **kwargs):
        save(self, *args, **kwargs)
        print("written", flush=True)
        time.sleep(600)
    PreTrainedModel.save_pretrained = save_then_hang
print("ready", flush=True)
while not Path(os.environ["GO"]).exists():
    time.sleep(0.01)
model = load_model(sys.argv[1])
print("loaded", model.vocab_size, flush=True)
"""


def first_run(gguf_dir: Path, cache_root: Path, go: Path, **env: str) -> subprocess.Popen:
    environment = {**cli_env(), "SPECDEC_CACHE": str(cache_root), "GO": str(go), **env}
    return subprocess.Popen(
        [sys.executable, "-c", FIRST_RUN, str(gguf_dir)], env=environment, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.slow  # three fresh interpreters importing transformers: about 20 s on 2 busy cores
def test_three_first_runs_together_convert_once_and_leave_no_temporaries(gguf_dir, tmp_path):
    go = tmp_path / "go"
    runs = [first_run(gguf_dir, tmp_path / "cache", go) for _ in range(3)]
    for run in runs:
        assert run.stdout.readline() == "ready\n"
    go.touch()
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    assert all(out == "loaded 512\n" for out, _ in outputs)
    errors = "".join(err for _, err in outputs)
    assert errors.count("specdec: converting stories260K.gguf") == 1, errors
    assert errors.count("another run is converting stories260K.gguf; waiting for it") >= 1
    names = entries(tmp_path / "cache" / "converted")
    assert len(names) == 2 and names[1] == f"{names[0]}.lock", names


@pytest.mark.slow  # two fresh interpreters importing transformers: about 12 s
def test_a_run_killed_while_converting_is_cleaned_up_by_the_next(gguf_dir, tmp_path, monkeypatch, reference, capfd):
    go = tmp_path / "go"
    go.touch()
    killed = first_run(gguf_dir, tmp_path / "cache", go, HANG="1")
    assert killed.stdout.readline() == "ready\n"
    assert killed.stdout.readline() == "written\n"
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    folder = tmp_path / "cache" / "converted"
    left = [name for name in entries(folder) if ".tmp" in name]
    assert left == [f"{gguf_cache.copy_path(gguf_dir, gguf_dir / 'stories260K.gguf').name}.tmp{killed.pid}"]
    monkeypatch.setenv("SPECDEC_CACHE", str(tmp_path / "cache"))
    capfd.readouterr()
    model = load_model(gguf_dir)
    assert f"removed {folder / left[0]}, a conversion that process {killed.pid} left unfinished" in capfd.readouterr().err
    assert torch.equal(logits(model), reference)
    assert not [name for name in entries(folder) if ".tmp" in name]


def test_a_temporary_of_a_live_run_is_left_alone(gguf_dir, cache):
    """Only temporaries of dead processes (or of the copy whose lock is held) are removed."""
    cache.mkdir(parents=True)
    alive = cache / f"other-model-0123456789abcdef.tmp{os.getppid()}"
    dead = cache / "other-model-0123456789abcdef.tmp999999999"
    alive.mkdir()
    dead.mkdir()
    load_model(gguf_dir)
    assert alive.is_dir() and not dead.exists()


def test_a_cache_that_fails_while_writing_keeps_the_model_in_memory(gguf_dir, cache, monkeypatch, reference, capfd):
    from transformers import PreTrainedModel

    def refuse(self, directory, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", refuse)
    model = load_model(gguf_dir)
    assert "note: cannot write the conversion cache" in capfd.readouterr().err
    assert torch.equal(logits(model), reference)
    assert [name for name in entries(cache) if not name.endswith(".lock")] == []
