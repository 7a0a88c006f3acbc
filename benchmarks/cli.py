"""``atnl bench``: the benchmarks of docs/API.md §8.2, each writing Markdown + JSON + PNG to --out.

- ``quality``: latent accuracy, semantic paths, t-SNE, Figure 6 (benchmarks.quality);
- ``fewshot``: few-shot classification with hallucination (benchmarks.fewshot);
- ``labels``: outside classifiers read the labels of hallucinated images (benchmarks.labels);
- ``service``: load test of the REST API against the in-process ceiling (benchmarks.service);
- ``soak``: a bounded soak of the REST API on loopback (benchmarks.soak, ``make soak``).
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, TaskID

from service.cli.console import console, progress_bar

bench_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmarks (docs/API.md §8.2); reports go to --out.")

OutOption = Annotated[Path, typer.Option(help="Report directory (Markdown, JSON, PNG).")]
QuickOption = Annotated[bool, typer.Option(help="Tiny data and epochs: the whole pipeline in seconds (for tests).")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
SeedOption = Annotated[int, typer.Option(help="Seeds splits, training, draws and pairs.")]
ThreadsOption = Annotated[int, typer.Option(help="torch CPU threads (0: torch's default; --quick uses 1).")]


def bench_command(name: str, out: Path, quick: bool, device: str, seed: int, threads: int = 0) -> str:
    """The ``atnl bench NAME ...`` line that reproduces a report, for its header."""
    args = ["atnl", "bench", name, *(["--quick"] if quick else []), "--out", str(out)]
    args += [*(["--device", device] if device != "auto" else []), *(["--seed", str(seed)] if seed else [])]
    args += ["--threads", str(threads)] if threads else []
    return shlex.join(args)


class StageBars:
    """``on_progress(stage, done, total)`` drawn as one rich bar per stage."""

    def __init__(self, bar: Progress) -> None:
        self.bar, self.tasks = bar, dict[str, TaskID]()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total, info="")
        self.bar.update(self.tasks[stage], completed=done, total=total)


def run_with_bars(name: str, run: Callable[..., dict[str, Any]], cfg: Any, out: Path, command: str) -> None:
    """Run one benchmark under rich progress bars and say where its report went."""

    with progress_bar() as bar:
        result = run(cfg, out, command, StageBars(bar))
    console.print(f"wrote {out / (name + '.md')} in {result['seconds'] / 60:.1f} min")


def run_bench(name: str, config_cls: Any, run: Callable[..., dict[str, Any]], out: Path, quick: bool, device: str,
              seed: int, threads: int) -> None:  # fmt: skip
    """Build the benchmark's config (its ``quick`` variant with --quick) and run it under progress bars."""
    opts: dict[str, Any] = {"device": device, "seed": seed, **({"threads": threads} if threads else {})}
    cfg = config_cls.quick(**opts) if quick else config_cls(**opts)
    run_with_bars(name, run, cfg, out, bench_command(name, out, quick, device, seed, threads))


@bench_app.command("quality")
def quality_cmd(out: OutOption = Path("reports"), quick: QuickOption = False, device: DeviceOption = "auto",
                seed: SeedOption = 0, threads: ThreadsOption = 0) -> None:  # fmt: skip
    """Paper Table 1 and Figures 5-6 for ae, vae, aae, acai, vae-tl and atnl on mnist-5k and pose-digits."""
    from benchmarks.quality import QualityConfig, run_quality

    run_bench("quality", QualityConfig, run_quality, out, quick, device, seed, threads)


@bench_app.command("colour")
def colour_cmd(out: OutOption = Path("reports"), quick: QuickOption = False, device: DeviceOption = "auto",
               seed: SeedOption = 0, threads: ThreadsOption = 0) -> None:  # fmt: skip
    """The quality bench on pose-photos (colour photo tiles in 9 pose bins, 48x48): ATNL against the plain AE."""
    from benchmarks.quality import QualityConfig, run_colour

    run_bench("colour", QualityConfig, run_colour, out, quick, device, seed, threads)


@bench_app.command("fewshot")
def fewshot_cmd(out: OutOption = Path("reports"), quick: QuickOption = False, device: DeviceOption = "auto",
                seed: SeedOption = 0, threads: ThreadsOption = 0) -> None:  # fmt: skip
    """Paper Table 2: pixel KNN and a small CNN on k real digits a label, with and without hallucination."""
    from benchmarks.fewshot import FewShotConfig, run_fewshot

    run_bench("fewshot", FewShotConfig, run_fewshot, out, quick, device, seed, threads)


@bench_app.command("labels")
def labels_cmd(out: OutOption = Path("reports"), quick: QuickOption = False, device: DeviceOption = "auto",
               seed: SeedOption = 0, threads: ThreadsOption = 0) -> None:  # fmt: skip
    """Hallucinated images of the default ATNL model, every strategy, read by three outside classifiers."""
    from benchmarks.labels import LabelsConfig, run_labels

    run_bench("labels", LabelsConfig, run_labels, out, quick, device, seed, threads)


@bench_app.command("service")
def service_cmd(
    out: OutOption = Path("reports"),
    quick: QuickOption = False,
    device: DeviceOption = "cpu",
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint to serve (default: the store's active model).")] = None,
    requests: Annotated[int, typer.Option(help="Requests per op of the per-op table (docs/API.md §8.2).")] = 100,
    concurrency: Annotated[int, typer.Option(help="Concurrent clients of the per-op table.")] = 8,
    soak: Annotated[int, typer.Option(help="Mixed requests between the two RSS readings.")] = 10_000,
    variant: Annotated[
        list[str] | None,
        typer.Option(help="Also measure rows 1-2 with these settings, e.g. 'ATNL_AUTOCAST=bf16,ATNL_TORCH_COMPILE=true'."),
    ] = None,
    profile: Annotated[bool, typer.Option(help="Rows 1-2 once more under py-spy (installed): where the CPU goes.")] = False,
) -> None:
    """The service under load against the model in process and a bare FastAPI endpoint; writes service.md and .json."""
    from benchmarks.service import ServiceBenchConfig, resolve_checkpoint, run_service

    variants = tuple(tuple(v.split(",")) for v in variant or [])
    opts: dict[str, Any] = {"device": device, "variants": variants, "profile": profile}
    cfg = ServiceBenchConfig.quick(**opts) if quick else ServiceBenchConfig(op_requests=requests, concurrency=concurrency,
                                                                            soak_requests=soak, **opts)  # fmt: skip
    args = ["atnl", "bench", "service", *(["--quick"] if quick else []), "--out", str(out), "--device", device]
    args += [] if quick else ["--requests", str(requests), "--concurrency", str(concurrency), "--soak", str(soak)]
    args += [*(a for v in variant or [] for a in ("--variant", v)), *(["--profile"] if profile else [])]
    args += ["--checkpoint", str(checkpoint)] if checkpoint else []
    with tempfile.TemporaryDirectory(prefix="atnl-bench-") as tmp:
        source = resolve_checkpoint(checkpoint, quick, device, Path(tmp))
        path = run_service(source, out, cfg, shlex.join(args), Path(tmp))
    typer.echo(f"wrote {path}")


@bench_app.command("soak")
def soak_cmd(
    out: OutOption = Path("reports"),
    quick: QuickOption = False,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint to serve (default: the store's active model).")] = None,
    seconds: Annotated[float, typer.Option(help="Length of the run, warm-up included.")] = 180.0,
    concurrency: Annotated[int, typer.Option(help="Concurrent clients.")] = 4,
) -> None:
    """Bounded soak on loopback: mixed traffic for --seconds; fails on any 5xx or RSS growth >= 5 %."""
    from benchmarks.service import resolve_checkpoint
    from benchmarks.soak import SoakConfig, run_soak

    cfg = SoakConfig.quick() if quick else SoakConfig(seconds=seconds, concurrency=concurrency)
    command = f"atnl bench soak{' --quick' if quick else f' --seconds {seconds:g} --concurrency {concurrency}'} --out {out}"
    with tempfile.TemporaryDirectory(prefix="atnl-soak-") as tmp:
        # No model in the store: a one-epoch model is trained first (a minute on a CPU).
        source = resolve_checkpoint(checkpoint, True, "cpu", Path(tmp))
        console.print(f"soaking {source} for {cfg.seconds:.0f} s with {cfg.concurrency} clients")
        result = run_soak(source, out, cfg, command, Path(tmp))
    rss = result["rss"]
    console.print(
        f"wrote {out / 'soak.md'}: {result['requests']} requests, {result['server_errors']} 5xx, "
        f"RSS {rss['baseline_mb']:.0f} -> {rss['final_mb']:.0f} MiB ({rss['growth']:+.2%})"
    )
    if not result["passed"]:
        raise typer.Exit(1)
