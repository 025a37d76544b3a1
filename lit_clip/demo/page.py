"""The demo page: one tab per method family, built with Gradio, served locally.

Every tab's answer is also an API endpoint (``api_name``), so Gradio's client (and the tests) call exactly what the
buttons call. The page itself fetches nothing from the network: the theme uses the system's fonts, not Google's, and
Gradio's analytics are off. (Weights named by a hub id, ``--pretrained openai/clip-vit-base-patch32`` or a ClipCap's
``gpt2`` tokenizer, are read from the Hugging Face cache or downloaded once, as everywhere in lit-clip.)
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from lit_clip.demo import (  # noqa: E402
    audio, detection, examples, few_shot, generation, segmentation, three_d, video, vl, zero_shot,
)
from lit_clip.demo.weights import Weights  # noqa: E402

# (tab title, its module): each module's ``tab(weights, folder)`` builds the tab's components and events.
TABS = [
    ("Zero-shot and retrieval", zero_shot),
    ("Few-shot", few_shot),
    ("Segmentation", segmentation),
    ("Detection and grounding", detection),
    ("Audio", audio),
    ("Video", video),
    ("3D and depth", three_d),
    ("Generation", generation),
    ("VQA and captioning", vl),
]

SYSTEM_FONTS = [gr.themes.Font("ui-sans-serif"), gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")]
SYSTEM_MONO = [gr.themes.Font("ui-monospace"), gr.themes.Font("monospace")]


def theme() -> gr.themes.Base:
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO)


def build_page(weights: Weights, folder: Path, tabs: list[tuple[str, object]] | None = None) -> gr.Blocks:
    """The page's Blocks (not yet served): the ``tabs`` given, by default all of :data:`TABS`."""
    source = weights.pretrained or "none (start with --pretrained to use the tabs that need a CLIP)"
    found = len(weights.checkpoints)
    with gr.Blocks(title="lit-clip demo") as page:
        gr.Markdown(f"# lit-clip demo\nCLIP: `{source}` · method checkpoints found: {found}")
        for title, module in TABS if tabs is None else tabs:
            with gr.Tab(title):
                module.tab(weights, folder)
    return page


def launch(weights: Weights, examples_folder: str | Path | None = None, host: str = "127.0.0.1",
           port: int | None = None, block: bool = True, tabs: list[tuple[str, object]] | None = None,
           ) -> tuple[gr.Blocks, str]:  # fmt: skip
    """Serve the page; returns it and its local URL (``block=False`` returns at once, for tests and scripts)."""
    folder = examples.prepare(examples_folder)
    # Every answer runs a Trainer, which would log its devices and tips each time, and methods that move their own
    # batches say so on every predict: noise in a page's log.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*on_before_batch_transfer")
    page = build_page(weights, folder, tabs)
    _, url, _ = page.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
                            allowed_paths=[str(folder)], theme=theme(), footer_links=["api"])  # fmt: skip
    return page, url
