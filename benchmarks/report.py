"""What every benchmark report carries: the command, the hardware, and how it is written.

A report is ``NAME.md`` (Markdown tables) and ``NAME.json`` (the same numbers
and more) in the output directory, beside its PNG figures.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

ProgressFn = Callable[[str, int, int], None]
"""``on_progress(stage, done, total)``: the caller draws it (the CLI uses rich bars)."""


def no_progress(stage: str, done: int, total: int) -> None:
    return None


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch uses ``n`` CPU threads inside the block (0: unchanged); the old setting comes back after.

    One thread suits the tiny --quick runs: on a shared 2-core machine, two threads
    per process mostly wait on each other."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> dict[str, Any]:
    """CPU model, logical CPUs, torch threads, and the accelerator if one was used."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()],
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def hardware_line(hw: dict[str, Any]) -> str:
    gpu = f", GPU {hw['gpu']}" if "gpu" in hw else ""
    return (
        f"{hw['cpu']} ({hw['cpu_count']} logical CPUs, {hw['torch_threads']} torch threads){gpu}; "
        f"device {hw['device']}; torch {hw['torch']}, Python {hw['python']}; "
        f"load average at the end {hw['load_average_1_5_15min']} (the CPU is shared)"
    )


def md_table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out: Path, name: str, title: str, command: str, hw: dict[str, Any], body: str, data: dict[str, Any]) -> Path:
    """Write ``out/NAME.md`` (title, command, hardware, body) and ``out/NAME.json``; returns the .md path."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    head = f"# {title}\n\nMade by `{command}` on {stamp}.\n\nHardware: {hardware_line(hw)}.\n\n"
    md = out / f"{name}.md"
    md.write_text(head + body.rstrip() + "\n")
    payload = {"command": command, "created": stamp, "hardware": hw, **data}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    return md
