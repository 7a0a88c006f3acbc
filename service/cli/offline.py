"""``atnl interpolate`` and ``atnl hallucinate``: a checkpoint's morphs and hallucinations without a server.

They run the same code as the API (``service.model_runner``, ``models.preprocess``,
``service.answer_files``), on local files: pictures are prepared by the model's own
preprocessing unless ``--preprocess`` says otherwise. Every mistake is one line.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from service.cli.console import console

if TYPE_CHECKING:
    from service.model_runner import ModelRunner

MODEL_HELP = "Checkpoint directory (model.json + model.safetensors), e.g. one `atnl train --out` wrote."
PER_CLASS_HELP = "Images to make of each label with examples and (but for --strategy same) each whose two neighbours have some."
PREPROCESS_HELP = "model (its own), digits (ink crop), fit (centre crop + resize, colour kept) or none (resize only)."


def load_model(model: Path, device: str) -> ModelRunner:
    """The checkpoint behind a runner, or a one-line usage error."""
    from models.checkpoint import CheckpointError
    from models.errors import InputError
    from service.model_runner import load_runner_on

    try:
        return load_runner_on(model, device)
    except (CheckpointError, InputError, OSError, ValueError, KeyError) as e:
        raise typer.BadParameter(f"{model}: not a readable checkpoint ({e})", param_hint="--model") from e


def read_pictures(runner: ModelRunner, paths: list[Path], preprocess: str, hint: str) -> np.ndarray:
    """Image files -> (N, C, H, W) float32 in [0, 1] in the model's shape, prepared by ``preprocess``."""
    from PIL import Image

    from models.errors import InputError
    from models.preprocess import prepare, requested

    cfg = runner.model.cfg
    how = requested(preprocess, cfg.preprocess)
    out = np.empty((len(paths), cfg.channels, cfg.image_size, cfg.image_size), np.float32)
    for k, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img.load()
                out[k] = prepare(img, how, cfg.image_size, cfg.channels)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise typer.BadParameter(
                f"{path}: {e if isinstance(e, InputError) else 'not a readable image'}", param_hint=hint
            ) from e
    return out


def interpolate_cmd(
    start: Annotated[Path, typer.Argument(metavar="START", help="The first image (PNG or JPEG).")],
    end: Annotated[Path, typer.Argument(metavar="END", help="The last image.")],
    model: Annotated[Path, typer.Option(help=MODEL_HELP)],
    out: Annotated[Path, typer.Option(help="File to write: .png (a strip, left to right) or .gif.")],
    steps: Annotated[int, typer.Option(min=2, max=512, help="Frames, endpoints included.")] = 8,
    method: Annotated[str, typer.Option(help="slerp or lerp (slerp for atnl models).")] = "slerp",
    preprocess: Annotated[str, typer.Option(help=PREPROCESS_HELP)] = "model",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
) -> None:
    """Morph START into END with a checkpoint and write the frames as one PNG strip or a GIF."""
    from service import answer_files

    if out.suffix.lower() not in (".png", ".gif"):
        raise typer.BadParameter(f"{out}: write a .png strip or a .gif", param_hint="--out")
    if method not in ("slerp", "lerp"):
        raise typer.BadParameter(f"{method!r} is not slerp or lerp", param_hint="--method")
    runner = load_model(model, device)
    images = read_pictures(runner, [start, end], preprocess, "START/END")
    frames = list(runner.path(images, np.linspace(0.0, 1.0, steps, dtype=np.float32), method))  # type: ignore[arg-type]
    body = answer_files.png_strip(frames) if out.suffix.lower() == ".png" else answer_files.gif_bytes(frames, 120)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body)
    console.print(f"wrote {out}: {steps} frames of {runner.model.cfg.channels}x{runner.model.cfg.image_size}² ({method})")


def hallucinate_cmd(
    model: Annotated[Path, typer.Option(help=MODEL_HELP)],
    examples: Annotated[
        Path, typer.Option(help="Labelled examples: one sub-folder per label, or images plus labels.csv (file,label).")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write: the PNGs and labels.csv (file,label,read).")],
    per_class: Annotated[int, typer.Option(min=1, max=100_000, help=PER_CLASS_HELP)] = 10,
    strategy: Annotated[str | None, typer.Option(help="restyle, same, ordinal, both or mixed; default: the model's.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the draws.")] = 0,
    check: Annotated[str, typer.Option(help="model: redraw images the model reads as another label; none: keep them.")] = "model",
    preprocess: Annotated[str, typer.Option(help=PREPROCESS_HELP)] = "model",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
) -> None:
    """Make PER_CLASS new images of each label from a few labelled EXAMPLES, with their labels."""
    from models.errors import InputError
    from models.hallucination import default_strategy
    from models.layout import LayoutError, labelled_files
    from service import answer_files

    if check not in ("model", "none"):
        raise typer.BadParameter(f"{check!r} is not model or none", param_hint="--check")
    runner = load_model(model, device)
    names = list(runner.model.meta.get("labels", {}).get("names", []))
    try:
        _, pairs = labelled_files(examples)
    except LayoutError as e:
        raise typer.BadParameter(str(e), param_hint="--examples") from e
    unknown = sorted({label for _, label in pairs} - set(names))
    if unknown:
        raise typer.BadParameter(f"label {unknown[0]!r} is not one of the model's labels {names}", param_hint="--examples")
    images = read_pictures(runner, [p for p, _ in pairs], preprocess, "--examples")
    labels = [names.index(label) for _, label in pairs]
    try:
        made, pixels = runner.hallucinate(
            images,
            labels,
            len(names),
            per_class,
            None,
            strategy or default_strategy(runner.model),
            seed,
            check,  # type: ignore[arg-type]
        )
    except InputError as e:
        raise typer.BadParameter(str(e)) from e
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (sample, image) in enumerate(zip(made.samples, pixels, strict=True)):
        name = f"{k:05d}.png"
        (out / name).write_bytes(answer_files.png_bytes(image))
        rows.append([name, names[sample.label], "" if sample.read is None else names[sample.read]])
    with (out / "labels.csv").open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([["file", "label", "read"], *rows])
    for d in made.disagreements:
        console.print(f"example {pairs[d.index][0]} is labelled {names[d.given]!r}; the model reads {names[d.read]!r}")
    console.print(f"wrote {len(rows)} images and labels.csv to {out} ({made.replaced} redrawn by the self-check)")
