"""Where a server's CPU goes: py-spy samples of a running process, summarised.

``atnl bench service --profile`` records the service under load with py-spy
(``pip install py-spy``; it needs permission to ptrace the server) and reports the
share of samples per kind of work and the functions with the most samples of their own.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

KINDS = (
    ("event loop (uvloop: sockets, polling)", ("asyncio/runners.py",)),
    ("model forward (torch)", ("torch/", "models/")),
    ("image decoding (Pillow, numpy)", ("PIL/", "service/imaging.py", "numpy/")),
    ("thread hand-off and waits (anyio, threading, queue)", ("anyio/", "threading.py", "queue.py", "concurrent/")),
    ("HTTP, multipart, routing (uvicorn, starlette, fastapi)", ("uvicorn/", "starlette/", "fastapi/", "multipart/", "h11/")),
    ("validation and JSON (pydantic, json)", ("pydantic", "json/")),
    ("the service's own code", ("service/",)),
)
"""Kinds of work, each named by the source paths of its frames; a sample counts for the
first kind found from the innermost frame outwards."""
OTHER = "other (asyncio, interpreter)"


def py_spy() -> str | None:
    """The py-spy executable beside this Python, or on PATH; None when not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def kind_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for kind, paths in KINDS:
            if any(p in frame for p in paths):
                return kind
    return OTHER


class Recorder:
    """py-spy recording process ``pid`` into ``out`` (collapsed stacks) until ``stop``."""

    def __init__(self, exe: str, pid: int, out: Path, rate: int = 100) -> None:
        self.out = out
        args = [exe, "record", "--nonblocking", "-r", str(rate), "-f", "raw", "-o", str(out), "-p", str(pid)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> dict[str, Any] | None:
        """Stop recording and summarise; None if py-spy could not record (no permission, ...)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.out.is_file():
            return None
        return summarise(self.out.read_text())


def summarise(collapsed: str, top: int = 10) -> dict[str, Any]:
    """Collapsed stacks (``frame;frame;... count`` per line) -> share per kind, top self functions."""
    kinds: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        stack = stack_text.split(";")
        count = int(count_text)
        total += count
        kinds[kind_of(stack)] += count
        own[stack[-1]] += count
    share = {k: round(100.0 * n / total, 1) for k, n in kinds.most_common()} if total else {}
    functions = [(f, round(100.0 * n / total, 1)) for f, n in own.most_common(top)] if total else []
    return {"samples": total, "kinds_percent": share, "top_self_percent": functions}
