"""``lit-clip demo``: a local web page on which every method family runs on the user's own inputs.

    lit-clip demo --pretrained runs/clip-shapes/version_0/checkpoints/last.ckpt --checkpoints runs/

``--pretrained`` is the CLIP of the zero-shot tabs (anything :func:`lit_clip.load_clip` reads: a lit-clip
checkpoint, an OpenAI or open_clip file, a Hugging Face folder or hub id); ``--checkpoints`` are files or folders of
method checkpoints written by ``lit-clip fit``, each offered in its family's tab. Needs the ``demo`` extra
(``pip install -e ".[demo]"``: Gradio).
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lit-clip demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained", help="the CLIP of the zero-shot tabs: a checkpoint file, folder or hub id")
    parser.add_argument("--checkpoints", nargs="*", default=[],
                        help="method checkpoints (.ckpt files, or folders searched for them) for the other tabs")
    parser.add_argument("--device", default="cpu", help="where the models run: cpu, cuda, cuda:1, ...")
    parser.add_argument("--host", default="127.0.0.1", help="the address to serve on (0.0.0.0: the whole network)")
    parser.add_argument("--port", type=int, default=None, help="the port (default: Gradio's, 7860 or the next free)")
    parser.add_argument("--examples", default=None, help="where the ShapesWorld examples are written "
                                                         "(default ~/.cache/lit-clip/demo-examples)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        from lit_clip.demo.page import launch
        from lit_clip.demo.weights import Weights, find_checkpoints
    except ModuleNotFoundError as error:
        if error.name != "gradio":
            raise
        sys.exit('lit-clip demo needs Gradio: pip install -e ".[demo]" (or pip install gradio)')
    from lit_clip.demo.errors import DemoInputError

    try:
        weights = Weights(args.pretrained, find_checkpoints(args.checkpoints), args.device)
    except DemoInputError as error:
        sys.exit(f"lit-clip demo: {error}")
    launch(weights, args.examples, args.host, args.port)
