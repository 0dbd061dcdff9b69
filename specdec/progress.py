"""Progress of long one-time work, on stderr: what is being done, a bar when it has countable
steps, and how long it took.

The first run on a machine converts a GGUF target to safetensors (`integrations/loading.py`) and
times the GEMM kernels per weight shape (`integrations/gemm_plans.py`); loading a PACER
pre-verifier is usually quick. Each is wrapped in `reporting`, so that a user sees what the wait
is for. Everything goes to stderr (stdout carries results, e.g. `specdec generate --json`), and
nothing is printed when nothing long happens: a warm cache skips the work, and work that is
usually quick (`after` seconds) is reported only if it is still running by then. The bar is
tqdm's, which `TQDM_DISABLE=1` turns off (the lines stay).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterator

import attrs

PREFIX = "specdec: "


@attrs.define
class Progress:
    """The report of one piece of work: `advance()` after each of its `total` steps."""

    what: str
    total: int | None = None
    unit: str = "step"
    started: threading.Event = attrs.field(factory=threading.Event)  # the start line is out
    _bar: object | None = attrs.field(default=None, repr=False)
    _closed: bool = attrs.field(default=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def start(self, *, bar: bool) -> None:
        """Print the start line (once), and open the bar if asked and there are steps to count."""
        with self._lock:
            if self.started.is_set() or self._closed:
                return
            _say(f"{self.what} ...")
            if bar and self.total:
                from tqdm import tqdm

                # `disable` is left to tqdm, which reads TQDM_DISABLE
                self._bar = tqdm(total=self.total, unit=self.unit, file=sys.stderr, leave=False, dynamic_ncols=True)
            self.started.set()

    def advance(self, steps: int = 1) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(steps)  # type: ignore[attr-defined]

    def finish(self, done: str, seconds: float, *, say: bool = True) -> None:
        """Close the bar and, if the start line was printed and `say`, print the end line."""
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.close()  # type: ignore[attr-defined]
                self._bar = None
            if say and self.started.is_set():
                _say(f"{done} in {seconds:.1f} s")


def note(text: str) -> None:
    """`specdec: note: TEXT` on stderr: something the user should know that is not an error."""
    _say(f"note: {text}")


def _say(line: str) -> None:
    print(PREFIX + line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def reporting(what: str, *, done: str | None = None, total: int | None = None, unit: str = "step",
              after: float = 0.0) -> Iterator[Progress]:
    """Report the block's work on stderr: `specdec: WHAT ...` when it starts, a bar over `total`
    steps (call `advance()` on the yielded `Progress`), `specdec: DONE in N.N s` when it ends.

    With `after` > 0 (work that is usually quick) nothing is printed unless the block is still
    running `after` seconds in; then the start line, no bar, and the end line. When the block
    raises, no end line is printed: the error says what happened.
    """
    progress = Progress(what, total, unit)
    timer: threading.Timer | None = None
    if after > 0:
        timer = threading.Timer(after, progress.start, kwargs={"bar": False})
        timer.daemon = True
        timer.start()
    else:
        progress.start(bar=True)
    begun = time.perf_counter()
    finished = False
    try:
        yield progress
        finished = True
    finally:
        if timer is not None:
            timer.cancel()
        progress.finish(done or what, time.perf_counter() - begun, say=finished)
