"""``lit-clip demo``: a local web page on which every method family runs on the user's own inputs.

    lit-clip demo --pretrained runs/clip-shapes/version_0/checkpoints/last.ckpt --checkpoints runs/
    lit-clip demo --config configs/coop/shapes.yaml

``--pretrained`` is the CLIP of the zero-shot tabs (anything :func:`lit_clip.load_clip` reads: a lit-clip
checkpoint, an OpenAI or open_clip file, a Hugging Face folder or hub id); ``--checkpoints`` are files or folders of
method checkpoints written by ``lit-clip fit``, each offered in its family's tab (a path typed on the page is read
only inside them). ``--config`` takes both from a training config: its method's ``pretrained`` (for a CLIP
pretraining config, the newest ``last.ckpt`` of its runs) and its logger's run folder. Needs the ``demo`` extra
(``pip install -e ".[demo]"``: Gradio).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lit-clip demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained", help="the CLIP of the zero-shot tabs: a checkpoint file, folder or hub id")
    parser.add_argument("--checkpoints", nargs="*", default=[],
                        help="method checkpoints (.ckpt files, or folders searched for them) for the other tabs")
    parser.add_argument("--config", help="a training config: its CLIP and its runs' checkpoints, where the two "
                                         "options above are not given")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="where the models run: cpu, cuda, cuda:1, ...")
    parser.add_argument("--host", default="127.0.0.1", help="the address to serve on (0.0.0.0: the whole network)")
    parser.add_argument("--port", type=int, default=None, help="the port (default: Gradio's, 7860 or the next free)")
    parser.add_argument("--examples", default=None, help="where the ShapesWorld examples are written "
                                                         "(default ~/.cache/lit-clip/demo-examples)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        from lit_clip.demo.errors import DemoInputError
        from lit_clip.demo.page import launch
        from lit_clip.demo.weights import Weights, find_checkpoints
    except ModuleNotFoundError as error:
        if error.name != "gradio":
            raise
        sys.exit('lit-clip demo needs Gradio: pip install -e ".[demo]" (or pip install gradio)')
    try:
        if args.config:
            pretrained, runs = config_weights(args.config)
            args.pretrained = args.pretrained or pretrained
            args.checkpoints = args.checkpoints or [runs for runs in [runs] if runs.is_dir()]
        weights = Weights(args.pretrained, find_checkpoints(args.checkpoints), args.device, args.checkpoints)
    except DemoInputError as error:
        sys.exit(f"lit-clip demo: {error}")
    launch(weights, args.examples, args.host, args.port)


def config_weights(path: str | Path) -> tuple[str | None, Path]:
    """A training config's CLIP (its method's ``pretrained``; for a CLIP pretraining config, which has none, the
    newest ``last.ckpt`` its runs wrote) and its runs' folder (its logger's ``save_dir/name``)."""
    from lit_clip.demo.errors import DemoInputError

    path = Path(path)
    if not path.is_file():
        raise DemoInputError(f"--config: {path} not found; expected a lit-clip config such as configs/coop/shapes.yaml")
    config = yaml.safe_load(path.read_text()) or {}
    logger = (config.get("trainer") or {}).get("logger") or {}
    logger = logger[0] if isinstance(logger, list) else logger
    arguments = logger.get("init_args", {}) if isinstance(logger, dict) else {}
    runs = Path(arguments.get("save_dir", "lightning_logs")) / arguments.get("name", "")
    pretrained = ((config.get("model") or {}).get("init_args") or {}).get("pretrained")
    if pretrained is None:
        newest = sorted(runs.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        pretrained = str(newest[-1]) if newest else None
    return pretrained, runs
