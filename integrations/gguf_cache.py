"""The safetensors copies of GGUF models, cached under `SPECDEC_CACHE/converted/`.

Dequantising a GGUF file through transformers is slow (about 15 s and 517 MB written for the
default target), so the first run converts it and later runs load the copy. Runs may start
together, be killed mid-way, or find the cache unwritable or its disk full; so:

- the copy is written into `NAME.tmpPID` beside it and renamed into place: a copy present is whole;
- a lock file beside the copy (`NAME.lock`, `fcntl.flock`) lets one of several first runs convert
  while the others wait and then load its copy;
- a temporary left by a process that died (killed mid-way) is removed by the next run;
- a copy found damaged (a file missing or truncated) is converted again, with a note;
- a cache that cannot be written (read-only, a path through a file) is noticed before converting:
  the model is converted in memory for this run only, with a note;
- a disk too full for the copy is an error saying how much room it needs, before anything is
  written (and if the disk fills while writing, the temporary is removed).
Locks are `flock` locks, so the processes sharing a cache must run on one machine.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any, ContextManager

import attrs
import torch

from specdec.defaults import cache_root
from specdec.errors import CacheError, ModelFileError
from specdec.progress import Progress, note, reporting

from .model_files import (
    AGAIN,
    CONFIG,
    check_config,
    check_gguf,
    has_tokenizer,
    safetensors_problem,
)

WEIGHTS = "model.safetensors"
_TEMPORARY = re.compile(r"(?P<name>.+)\.tmp(?P<pid>\d+)")
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ERRORS = (ValueError, KeyError, IndexError, TypeError, RuntimeError, OSError, struct.error)


@attrs.frozen
class InMemory:
    """A converted model that could not be cached: used for this run only."""

    model: Any
    tokenizer: Any


def converted_gguf(directory: Path, gguf: Path) -> Path | InMemory:
    """The cached copy of `gguf` (converted now if there is none or it is damaged), or the model
    converted in memory when the cache cannot be written."""
    check_gguf(gguf)
    target = copy_path(directory, gguf)
    if copy_problem(target) is None:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock(target, gguf)
    except OSError as error:
        return _in_memory(directory, gguf, target.parent, error)
    try:
        remove_stale_temporaries(target.parent, target.name)
        problem = copy_problem(target)
        if problem is None:  # another run converted it while this one waited
            return target
        temporary = target.with_name(f"{target.name}.tmp{os.getpid()}")
        try:
            if target.exists():
                note(f"the converted copy in {target} is damaged ({problem}); converting {gguf.name} again")
                shutil.rmtree(target)
            temporary.mkdir()
        except OSError as error:
            return _in_memory(directory, gguf, target.parent, error)
        try:
            with _reporting(gguf, target) as progress:
                converted = _convert(directory, gguf, progress)
                try:
                    _write(converted, temporary)
                    os.rename(temporary, target)
                except CacheError:
                    raise
                except OSError as error:
                    if copy_problem(target) is None:  # renamed onto a copy another run made meanwhile
                        return target
                    note(
                        f"cannot write the conversion cache {target.parent} ({error.strerror or error}); "
                        "using the model converted in memory for this run only"
                    )
                    return converted
                progress.advance()
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        return target
    finally:
        os.close(lock)  # releases the lock


def copy_path(directory: Path, gguf: Path) -> Path:
    """Where the copy of `gguf` is cached: a new file (path, size or time) gets a new copy."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "converted" / f"{directory.name}-{key}"


def copy_problem(target: Path) -> str | None:
    """What is wrong with a cached copy (None: it is whole): read from sizes and headers only."""
    if not target.is_dir():
        return "missing"
    try:
        check_config(target / CONFIG)
    except ModelFileError as error:
        return str(error)
    if not has_tokenizer(target):
        return "no tokenizer file"
    return safetensors_problem(target / WEIGHTS)


def remove_stale_temporaries(folder: Path, own: str) -> None:
    """Remove the temporaries of dead processes, and any of `own` (the copy whose lock is held:
    no live run is writing it)."""
    for entry in folder.iterdir():
        match = _TEMPORARY.fullmatch(entry.name)
        if match and entry.is_dir() and (match["name"] == own or not _alive(int(match["pid"]))):
            shutil.rmtree(entry, ignore_errors=True)
            note(f"removed {entry}, a conversion that process {match['pid']} left unfinished")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _lock(target: Path, gguf: Path) -> int:
    """Take `target`'s lock file (released when the returned descriptor is closed); wait, with a
    note, while another run holds it."""
    handle = os.open(target.with_name(f"{target.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            note(f"another run is converting {gguf.name}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
    except BaseException:
        os.close(handle)
        raise
    return handle


def _in_memory(directory: Path, gguf: Path, folder: Path, error: OSError) -> InMemory:
    note(
        f"cannot write the conversion cache {folder} ({error.strerror or error}); converting {gguf.name} in memory "
        "for this run only (set SPECDEC_CACHE to a writable directory to keep the copy)"
    )
    with _reporting(gguf, None) as progress:
        return _convert(directory, gguf, progress)


def _reporting(gguf: Path, target: Path | None) -> ContextManager[Progress]:
    """Report the conversion on stderr: it is slow (about 15 s for the default target)."""
    where = f"in {target}" if target is not None else "in memory"
    return reporting(f"converting {gguf.name} to safetensors {where} (once per model file)", done=f"converted {gguf.name}", total=3)


def _convert(directory: Path, gguf: Path, progress: Progress) -> InMemory:
    """Dequantise `gguf` to a float32 transformers model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(directory), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), gguf_file=gguf.name)
    except _READ_ERRORS as error:
        raise ModelFileError(f"cannot read {gguf} ({type(error).__name__}: {error}): the file is damaged or not a model; {AGAIN}") from None
    progress.advance()
    rebuilt = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    rebuilt.load_state_dict(loaded.state_dict())
    rebuilt.generation_config = loaded.generation_config
    progress.advance()
    return InMemory(rebuilt, tokenizer)


def _write(converted: InMemory, temporary: Path) -> None:
    """Save the copy into `temporary`; a disk without room for it is a `CacheError`."""
    needed = sum(t.numel() * t.element_size() for t in {t.data_ptr(): t for t in converted.model.state_dict().values()}.values())
    free = shutil.disk_usage(temporary).free
    if free < needed:
        raise CacheError(_full_disk(temporary.parent, needed, free))
    try:
        converted.model.save_pretrained(temporary)
        converted.tokenizer.save_pretrained(temporary)
    except OSError as error:
        if error.errno in _FULL:
            raise CacheError(_full_disk(temporary.parent, needed, shutil.disk_usage(temporary).free)) from None
        raise


def _full_disk(folder: Path, needed: int, free: int) -> str:
    return (
        f"no room for the converted model in {folder}: it needs {needed / 1e6:.0f} MB and {free / 1e6:.0f} MB are free; "
        "free some space or set SPECDEC_CACHE to a directory on another disk"
    )
