"""The CLIP-guided generation tab: CLIPDraw draws a prompt in coloured strokes, CLIPasso sketches a picture in a few
black ones, VQGAN-CLIP generates a prompt through a VQGAN; each is optimised against the page's CLIP and shown while
it forms.

These methods optimise pictures, not networks: ``lit-clip fit`` runs them through a Trainer. The page runs the same
hooks in the Trainer's order in a plain loop (:func:`optimise`), so that it can hand the picture to the page every few
steps: ``setup`` creates the pictures from a :class:`~lit_clip.datamodules.GenerationTargets`, ``configure_optimizers``
the optimiser and its schedule, then each step ``training_step``'s loss, backward, the optimiser's and the schedule's
steps and ``on_train_batch_end``; ``on_train_end`` at the end. The same settings and seed give the pictures that
``lit-clip fit`` writes to ``pictures/``, and the page gives them as those files too (PNG, and SVG for strokes).
Every run is a new method, on the page's CLIP loaded once (:meth:`~lit_clip.demo.weights.Weights.clip_shared`).
"""
from __future__ import annotations

import functools
import inspect
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import gradio as gr
import numpy as np
import torch

from lit_clip import drawing
from lit_clip.datamodules import GenerationTargets
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import image_input, lines, open_image
from lit_clip.demo.weights import Weights
from lit_clip.methods import VQGANCLIP, CLIPasso, CLIPDraw
from lit_clip.methods.generation.guidance import GuidedGeneration, save_pictures

FAMILY = "generation"
# The prompts of configs/clipdraw/shapes.yaml and configs/vqgan_clip/shapes.yaml.
SHAPES_PROMPTS = ("a red circle", "a blue square", "a green triangle", "a yellow star")
# The tab's defaults are the ShapesWorld configs' settings (configs/<method>/shapes.yaml); the rest are the methods'.
CLIPDRAW_DEFAULTS = {"steps": 300, "num_paths": 64, "canvas_size": 128, "normalize": True}
CLIPASSO_DEFAULTS = {"steps": 300, "num_strokes": 8, "image_size": 128, "seeds": (0, 1000, 2000)}
VQGAN_CLIP_STEPS = 200
VQGAN_CLIP_METHODS = ("VQGANCLIP",)  # the checkpoints that VQGAN-CLIP takes its VQGAN and settings from
SHOW_EVERY = 10  # steps between the pictures the page shows

MAX_STEPS, MAX_STROKES, MAX_SIDE = 10_000, 1024, 1024
# CLIPasso's geometric loss weights of the stem and the ResNet's four stages (its default); zeros: the semantic loss
# alone, for a CLIP whose image tower is no ResNet.
GEOMETRIC_WEIGHTS, NO_GEOMETRY = (0.0, 0.0, 1.0, 1.0, 0.0), (0.0,) * 5
# VQGAN-CLIP settings that the page sets itself rather than take from the chosen checkpoint: the guiding CLIP is the
# page's, the seed is the user's.
PAGE_SETTINGS = ("pretrained", "architecture", "quick_gelu", "seed")

# One update of a run on the page: the picture, a line of progress, and the picture files once it is done.
Frame = tuple[np.ndarray, str, list[str] | None]


# --- the answers --------------------------------------------------------------------------------------------------
def clipdraw(weights: Weights, prompts: str, steps: int, strokes: int, canvas_size: int, normalize: bool, seed: int,
             every: int) -> Iterator[Frame]:  # fmt: skip
    """CLIPDraw's drawings of ``prompts`` (one per line, one drawing each) as they form, guided by the page's CLIP."""
    targets = GenerationTargets(prompts=lines(prompts, "prompts to draw"), steps=whole(steps, "steps", 1, MAX_STEPS))
    method = built(CLIPDraw, weights, num_paths=whole(strokes, "strokes", 1, MAX_STROKES),
                   canvas_size=whole(canvas_size, "canvas size", 16, MAX_SIDE), normalize=bool(normalize),
                   seed=whole(seed, "seed", 0, 2**63 - 1))  # fmt: skip
    yield from frames(method, targets, whole(every, "show every", 1, MAX_STEPS), weights.device, side_by_side)


def clipasso(weights: Weights, picture: str | None, steps: int, strokes: int, image_size: int, seeds: str,
             geometric: bool, every: int) -> Iterator[Frame]:  # fmt: skip
    """CLIPasso's sketch of the picture (a file) as it forms, beside the picture: the best strokes of the seeds so far,
    guided by the page's CLIP; ``geometric``: its ResNet feature-map loss (a ViT CLIP has none: semantic loss alone)."""
    open_image(picture, "image to sketch")  # readable, or a message naming it
    targets = GenerationTargets(images=[str(picture)], image_size=whole(image_size, "picture size", 16, MAX_SIDE),
                                steps=whole(steps, "steps", 1, MAX_STEPS))  # fmt: skip
    method = built(CLIPasso, weights, num_strokes=whole(strokes, "strokes", 1, MAX_STROKES), seeds=seed_list(seeds),
                   conv_layer_weights=GEOMETRIC_WEIGHTS if geometric else NO_GEOMETRY)  # fmt: skip
    yield from frames(method, targets, whole(every, "show every", 1, MAX_STEPS), weights.device, with_targets)


def vqgan_clip(weights: Weights, choice: str | None, prompts: str, steps: int, seed: int,
               every: int) -> Iterator[Frame]:  # fmt: skip
    """VQGAN-CLIP's pictures of ``prompts`` (one per line; ``"text:weight | text:weight"`` for several in one picture)
    as they form, with the VQGAN and settings of a VQGANCLIP checkpoint, guided by the page's CLIP."""
    # Its recorded settings, not its method: the run's method is built on the page's CLIP (and a saved VQGANCLIP does
    # not load into a fresh one anyway: it holds its pictures, which a method creates in `setup`).
    checkpoint = weights.checkpoint(choice, FAMILY, methods=VQGAN_CLIP_METHODS)
    accepted = inspect.signature(VQGANCLIP).parameters
    settings = {key: value for key, value in checkpoint.hyper_parameters.items()
                if key in accepted and key not in PAGE_SETTINGS}  # fmt: skip
    targets = GenerationTargets(prompts=lines(prompts, "prompts"), steps=whole(steps, "steps", 1, MAX_STEPS))
    try:
        method = built(VQGANCLIP, weights, **settings, seed=whole(seed, "seed", 0, 2**63 - 1))
    except FileNotFoundError as error:
        raise DemoInputError(f"{error} ({checkpoint.path} names it for its VQGAN; run the page where its paths "
                             "exist)") from error  # fmt: skip
    yield from frames(method, targets, whole(every, "show every", 1, MAX_STEPS), weights.device, side_by_side)


# --- running a method ---------------------------------------------------------------------------------------------
def built(method_class: type[GuidedGeneration], weights: Weights, **settings) -> GuidedGeneration:
    """``method_class`` guided by the page's CLIP with ``settings``; a setting the method refuses is a message."""
    try:
        with weights.clip_shared():  # loaded once per page; without --pretrained, a message saying how to give one
            return method_class(weights.pretrained, **settings)
    except ValueError as error:
        raise DemoInputError(str(error)) from error


def frames(method: GuidedGeneration, targets: GenerationTargets, every: int, device: torch.device,
           picture: Callable[[GuidedGeneration, GenerationTargets], np.ndarray]) -> Iterator[Frame]:  # fmt: skip
    """The page's updates of a run: ``picture`` of the method at each progress line, and at the end the pictures as
    ``lit-clip fit`` writes them (``{k:02d}_{caption}.png``, and ``.svg`` for strokes)."""
    for status, done in optimise(method, targets, every, device):
        if not done:
            yield picture(method, targets), status, None
            continue
        # Gradio copies the files into its cache before it asks for more, after which they can go.
        with tempfile.TemporaryDirectory(prefix="lit-clip-generation-") as directory:
            save_pictures(method, Path(directory))
            yield picture(method, targets), status, [str(path) for path in sorted(Path(directory).iterdir())]


def optimise(method: GuidedGeneration, targets: GenerationTargets, every: int,
             device: torch.device) -> Iterator[tuple[str, bool]]:  # fmt: skip
    """``method``'s optimisation of ``targets`` as ``lit-clip fit`` runs it; yields a line of progress (the step and
    what ``training_step`` logged) and whether the run is done: before the first step, every ``every`` steps and at
    the end."""
    loop, logged = PlainLoop(targets), {}
    method.trainer = loop

    def log(name: str, value: torch.Tensor | float, **options) -> None:  # shown on the page, not logged
        logged[name] = float(torch.as_tensor(value).detach())

    method.log = log
    method.to(device)  # beside its CLIP, the page's, already there: setup encodes the prompts or pictures with it
    try:
        method.setup("fit")
    except ValueError as error:  # what the method cannot do with these targets and settings
        raise DemoInputError(str(error)) from error
    method.to(device).train()  # the pictures setup made too
    configured = method.configure_optimizers()
    optimizer, schedule = (configured, None) if isinstance(configured, torch.optim.Optimizer) else (
        configured["optimizer"], configured["lr_scheduler"]["scheduler"])  # fmt: skip

    def progress(step: int) -> str:
        measured = [f"{name} {value:.4f}" for name, value in logged.items()]
        return " · ".join([f"step {step} / {targets.steps}", *measured])

    yield progress(0), False
    for step, batch in enumerate(targets.train_dataloader()):
        loop.global_step = step
        loss = method.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        loop.global_step = step + 1
        method.on_train_batch_end(loss, batch, step)
        if (step + 1) % every == 0 and step + 1 < targets.steps:
            yield progress(step + 1), False
    method.on_train_end()
    yield progress(targets.steps) + " · done", True


class PlainLoop:
    """What a generation method reads of its Trainer, for a run without one: its data module (``setup`` creates the
    pictures from it), the run's length (CLIPDraw's learning-rate schedule), the step (CLIPasso measures its strokes
    every few) and no log directory (``on_train_end`` writes no files)."""

    is_global_zero, log_dir = True, None

    def __init__(self, targets: GenerationTargets):
        self.datamodule, self.estimated_stepping_batches, self.global_step = targets, targets.steps, 0


# --- pictures -----------------------------------------------------------------------------------------------------
def side_by_side(method: GuidedGeneration, targets: GenerationTargets) -> np.ndarray:
    """The pictures side by side at their own size, each captioned with its prompt."""
    pictures = pixels(method)
    return drawing.caption_grid(pictures, method.captions, px=pictures[0].shape[0])


def with_targets(method: GuidedGeneration, targets: GenerationTargets) -> np.ndarray:
    """Each target picture followed by its sketch, at their own size."""
    sketches = pixels(method)
    photos = list((targets.target_images().permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
    captions = [text for name in method.captions for text in (name, f"sketch of {name}")]
    return drawing.caption_grid([p for pair in zip(photos, sketches) for p in pair], captions, px=sketches[0].shape[0])


def pixels(method: GuidedGeneration) -> list[np.ndarray]:
    """The method's current pictures as uint8 ``[H, W, 3]``, rounded as ``lit-clip fit`` saves them."""
    with torch.no_grad():
        pictures = method.pictures().float().clamp(0, 1).cpu()
    return list((pictures.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))


# --- reading the inputs -------------------------------------------------------------------------------------------
def whole(value: float | None, what: str, low: int, high: int) -> int:
    """``value`` as a whole number within ``[low, high]``, or a message naming ``what``."""
    if value is None or not float(value).is_integer() or not low <= value <= high:
        raise DemoInputError(f"{what}: expected a whole number from {low} to {high}, got {value}")
    return int(value)


def seed_list(text: str | None) -> tuple[int, ...]:
    """CLIPasso's seeds, whole numbers separated by commas: one sketch each, the best kept."""
    fields = [field.strip() for field in (text or "").split(",") if field.strip()]
    if not fields or not all(re.fullmatch(r"\d+", field) for field in fields):
        raise DemoInputError(f"seeds: expected whole numbers separated by commas (one sketch each), got {text!r}")
    return tuple(int(field) for field in fields)


# --- the tab ------------------------------------------------------------------------------------------------------
def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    gr.Markdown(
        "Pictures optimised against the page's CLIP (`--pretrained`), shown as they form: nothing is trained, so no "
        "checkpoint is needed, except VQGAN-CLIP's for its VQGAN. The defaults are the ShapesWorld configs' "
        "(`configs/clipdraw/shapes.yaml`, `configs/clipasso/shapes.yaml`, `configs/vqgan_clip/shapes.yaml`); the same "
        "settings and seed give what `lit-clip fit` with those configs writes to `pictures/`. The page answers one "
        "request at a time: while a picture is being optimised, the other tabs wait until it is done."
    )
    with gr.Tab("CLIPDraw"):
        clipdraw_tab(weights)
    with gr.Tab("CLIPasso"):
        clipasso_tab(weights, folder)
    with gr.Tab("VQGAN-CLIP"):
        vqgan_clip_tab(weights)


def clipdraw_tab(weights: Weights) -> None:
    gr.Markdown("CLIPDraw: random strokes (Bezier curves, width, colour) optimised until the CLIP sees the prompt.")
    with gr.Row():
        with gr.Column():
            prompts = gr.Textbox(SHAPES_PROMPTS[0], label="prompts (one per line, one drawing each)", lines=2)
            with gr.Row():
                steps = gr.Number(CLIPDRAW_DEFAULTS["steps"], label="steps", precision=0)
                strokes = gr.Number(CLIPDRAW_DEFAULTS["num_paths"], label="strokes", precision=0)
                canvas = gr.Number(CLIPDRAW_DEFAULTS["canvas_size"], label="canvas size (px)", precision=0)
            with gr.Row():
                seed = gr.Number(0, label="seed", precision=0)
                every = gr.Number(SHOW_EVERY, label="show every ... steps", precision=0)
                normalize = gr.Checkbox(CLIPDRAW_DEFAULTS["normalize"], label="normalise pixels as the CLIP was "
                                        "trained (off: as CLIPDraw's notebook, for OpenAI's CLIP)")  # fmt: skip
            run = gr.Button("Draw", variant="primary")
        results = run_outputs("drawing")
    gr.Examples([[prompt] for prompt in SHAPES_PROMPTS] + [["\n".join(SHAPES_PROMPTS)]], inputs=[prompts])
    run.click(shown(functools.partial(clipdraw, weights)), [prompts, steps, strokes, canvas, normalize, seed,
              every], results, api_name="clipdraw")  # fmt: skip


def clipasso_tab(weights: Weights, folder: Path) -> None:
    gr.Markdown("CLIPasso: a picture abstracted into a few black strokes whose CLIP features match the picture's; "
                "each seed draws a sketch and the best is kept. Its geometric loss reads a ResNet CLIP's feature maps "
                "(the ShapesWorld CLIP is RN-Tiny); with a ViT CLIP, turn it off.")  # fmt: skip
    with gr.Row():
        with gr.Column():
            picture = image_input("image to sketch")
            with gr.Row():
                steps = gr.Number(CLIPASSO_DEFAULTS["steps"], label="steps", precision=0)
                strokes = gr.Number(CLIPASSO_DEFAULTS["num_strokes"], label="strokes", precision=0)
                size = gr.Number(CLIPASSO_DEFAULTS["image_size"], label="picture size (px)", precision=0)
            with gr.Row():
                seeds = gr.Textbox(", ".join(map(str, CLIPASSO_DEFAULTS["seeds"])), label="seeds (comma-separated)")
                every = gr.Number(SHOW_EVERY, label="show every ... steps", precision=0)
                geometric = gr.Checkbox(True, label="geometric loss (ResNet CLIPs)")
            run = gr.Button("Sketch", variant="primary")
        results = run_outputs("picture and sketch")
    gr.Examples([[str(path)] for path in examples.single_object_images(folder)], inputs=[picture])
    run.click(shown(functools.partial(clipasso, weights)), [picture, steps, strokes, size, seeds, geometric,
              every], results, api_name="clipasso")  # fmt: skip


def vqgan_clip_tab(weights: Weights) -> None:
    gr.Markdown("VQGAN-CLIP: a VQGAN's latent grid optimised until the CLIP sees the prompt in its decoded picture. "
                "The VQGAN and the settings (size, cutouts, learning rate) are those of a VQGANCLIP checkpoint: "
                "`lit-clip fit --config configs/vqgan/shapes.yaml`, then `configs/vqgan_clip/shapes.yaml`, and start "
                "the page with `--checkpoints runs`.")  # fmt: skip
    choices = weights.choices(FAMILY, methods=VQGAN_CLIP_METHODS)
    with gr.Row():
        with gr.Column():
            checkpoint = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True,
                                     label="VQGANCLIP checkpoint (its VQGAN and settings)")  # fmt: skip
            prompts = gr.Textbox(SHAPES_PROMPTS[0], label="prompts (one per line; 'text:weight | text:weight' for "
                                 "several in one picture)", lines=2)  # fmt: skip
            with gr.Row():
                steps = gr.Number(VQGAN_CLIP_STEPS, label="steps", precision=0)
                seed = gr.Number(0, label="seed", precision=0)
                every = gr.Number(SHOW_EVERY, label="show every ... steps", precision=0)
            run = gr.Button("Generate", variant="primary")
        results = run_outputs("picture")
    gr.Examples([[prompt] for prompt in SHAPES_PROMPTS], inputs=[prompts])
    run.click(shown(functools.partial(vqgan_clip, weights)), [checkpoint, prompts, steps, seed, every],
              results, api_name="vqgan_clip")  # fmt: skip


def run_outputs(label: str) -> list[gr.components.Component]:
    """A run's picture, progress line and picture files."""
    with gr.Column():
        return [gr.Image(type="numpy", format="png", label=label), gr.Textbox(label="progress"),
                gr.File(label="the pictures as lit-clip fit writes them", file_count="multiple")]  # fmt: skip
