"""The few-shot tab: a trained CoOp, CoCoOp, MaPLe, CLIP-Adapter, Tip-Adapter or Tip-Adapter-F checkpoint classifies
an image over the classes of its data module, or, where what the method learnt does not depend on the classes, over
class names the user types."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import lightning as L
import numpy as np
from PIL import Image

from lit_clip import drawing
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_batch, image_input, image_size, open_image
from lit_clip.demo.weights import Checkpoint, Weights, predict
from lit_clip.methods.classification.tip_adapter import SEARCH_SPLITS, TipAdapter
from lit_clip.templates import COOP_TEMPLATES

FAMILY = "few-shot"
# The family's methods that classify: a LinearProbe has no predict_step, and no checkpoint keeps its probe.
CLASSIFIERS = ("CoOp", "CoCoOp", "MaPLe", "CLIPAdapter", "TipAdapter", "TipAdapterF")
SHOWN_CLASSES = 10
# CoOp's hand-written prompt: the zero-shot classifier's templates where the data module records none.
DEFAULT_TEMPLATES = ("a photo of a {}.",)
# The methods whose classifier is zero-shot CLIP's of the data module's templates (the others learn the prompt).
USES_TEMPLATES = ("CLIPAdapter", "TipAdapter", "TipAdapterF")

ABOUT = """\
A few-shot checkpoint classifies the image. Without class names it answers over the classes of the data module it
was trained with (read from the checkpoint). CoOp with one shared context, CoCoOp, MaPLe and CLIP-Adapter learnt
nothing tied to those classes and classify any class names you type; CoOp's class-specific contexts and Tip-Adapter's
cache are one per trained class and refuse other names. Train one, then start the page with `lit-clip demo
--checkpoints runs/`: `lit-clip fit --config configs/coop/shapes.yaml` (or `cocoop/`, `maple/`, `clip_adapter/`,
`tip_adapter_f/shapes.yaml`). Tip-Adapter itself trains nothing: `lit-clip fit` writes no checkpoint of it (one saved
from Python after `lit-clip test` works here). A linear probe is fitted inside `lit-clip test` and kept in no
checkpoint: this tab cannot show it."""


def classify(weights: Weights, choice: str | None, image: Image.Image, typed: str | None,
             progress: gr.Progress = gr.Progress()) -> tuple[dict[str, float], np.ndarray, str]:  # fmt: skip
    """The checkpoint's class probabilities for the image (its ``predict_step``), the image as the method sees it
    (its data module's evaluation crop) under the answer, and what it ran over."""
    progress(0.1, desc="loading the checkpoint")
    checkpoint, method = weights.load(choice, FAMILY, CLASSIFIERS)
    wanted = classes(weights, checkpoint, method, typed)
    # The size the data module's predict loader resizes to; without one recorded, the image tower's.
    size = checkpoint.datamodule_hyper_parameters.get("image_size") or image_size(method.model)
    batch = {"image": image_batch(method.model, [image], size)}
    loaders = tip_adapter_loaders(method, wanted)
    progress(0.3, desc="building Tip-Adapter's cache and searching alpha and beta" if loaders else "classifying")
    output = predict(method, batch, classnames=wanted.names, templates=wanted.templates, **loaders)
    probabilities = dict(zip(wanted.names, output["probabilities"][0].tolist()))
    caption = f"{output['predicted_class'][0]}: {float(output['probability'][0]):.1%}"
    picture = drawing.caption_grid([drawing.to_uint8_image(batch["image"][0])], [caption], px=160)
    about = f"**{checkpoint.method}** over {wanted.source}"
    if checkpoint.method in USES_TEMPLATES:
        about += " · prompt templates: " + ", ".join(f"`{template}`" for template in wanted.templates)
    return probabilities, picture, about


@dataclass
class Classes:
    """The class names and templates a prediction runs over, where they came from (said under the answer), and the
    data module whose images Tip-Adapter may still need (None where its files cannot be read)."""

    names: list[str]
    templates: list[str]
    source: str
    datamodule: L.LightningDataModule | None


def classes(weights: Weights, checkpoint: Checkpoint, method: L.LightningModule, typed: str | None) -> Classes:
    """The class names to predict over: those typed, where the method takes any; else its data module's (without it,
    Tip-Adapter's cache's). Class-specific contexts whose data module is gone take typed names as their classes'.
    The templates are the data module's, or, where it cannot be rebuilt, those its recorded arguments give."""
    datamodule = weights.data_module(checkpoint)
    dataset = checkpoint.datamodule_hyper_parameters.get("dataset")  # CoOpFewShot's default: CoOp's prompt of it
    default = [COOP_TEMPLATES[dataset]] if dataset in COOP_TEMPLATES else DEFAULT_TEMPLATES
    templates = weights.templates(checkpoint, default)
    datamodule, trained_names, unknown = trained_classes(checkpoint, datamodule, method)
    if typed and typed.strip():
        names = class_names(typed, at_least=2)
        if accepts_other_classes(checkpoint):
            return Classes(names, templates, f"the {len(names)} class names typed", datamodule)
        if trained_names is not None:
            raise DemoInputError(f"{checkpoint.method}'s {tied_parameters(checkpoint)} belong to its "
                                 f"{len(trained_names)} trained classes: it cannot classify other class names; clear "
                                 "'class names' to classify over its own classes")  # fmt: skip
        # Class-specific contexts whose data module is gone: the names typed stand for the trained classes.
        trained = len(method.ctx)
        if len(names) != trained:
            raise DemoInputError(f"this CoOp learnt one context per class for {trained} classes; type the names "
                                 f"of those {trained} classes in their training order (got {len(names)})")  # fmt: skip
        return Classes(names, templates, f"its {trained} classes, named as typed", None)
    if trained_names is None:
        raise DemoInputError(f"the classes of {checkpoint.path} are unknown: {unknown}; type the class names it was "
                             "trained on in 'class names'")  # fmt: skip
    source = (f"the {len(trained_names)} classes of its data module {type(datamodule).__name__}"
              if datamodule is not None else f"the {len(trained_names)} classes of its cache")  # fmt: skip
    return Classes(trained_names, templates, source, datamodule)


def trained_classes(checkpoint: Checkpoint, datamodule: L.LightningDataModule | None, method: L.LightningModule
                    ) -> tuple[L.LightningDataModule | None, list[str] | None, str]:  # fmt: skip
    """The data module where its classes (and so its files) can be read, else None; the trained class names (its,
    else those of Tip-Adapter's cache, else None); and, where the data module's are unknown, why."""
    if datamodule is None:
        recorded = checkpoint.datamodule_hyper_parameters.get("_class_path")
        unknown = (f"its data module {recorded.rsplit('.', 1)[-1]} cannot be rebuilt here (most often: its data "
                   "files are not on this machine; the page's log says why)" if recorded
                   else "it records no data module")  # fmt: skip
    else:
        try:
            return datamodule, list(datamodule.classnames), ""
        except OSError as error:  # a data set on disk reads its files here: they may be gone since the fit
            unknown = f"its data module {type(datamodule).__name__} cannot read its files ({error})"
    if not isinstance(method, TipAdapter):
        return None, None, unknown
    if not method.has_cache:
        raise DemoInputError(f"this {checkpoint.method} checkpoint has no cache yet: it builds one from its data "
                             f"module's training images, but {unknown}")  # fmt: skip
    return None, list(method.cache_classnames), unknown


def accepts_other_classes(checkpoint: Checkpoint) -> bool:
    """Whether the method can classify class names it was not trained on: CoOp's shared context, CoCoOp's context and
    Meta-Net, MaPLe's prompts and CLIP-Adapter's image adapter meet any name through the text tower, while CoOp's
    class-specific contexts and Tip-Adapter's cache values are one per trained class."""
    if checkpoint.method == "CoOp":
        return not checkpoint.hyper_parameters.get("class_specific_context", False)
    return checkpoint.method in ("CoCoOp", "MaPLe", "CLIPAdapter")


def tied_parameters(checkpoint: Checkpoint) -> str:
    return "class-specific contexts" if checkpoint.method == "CoOp" else "cached few-shot image features and labels"


def tip_adapter_loaders(method: L.LightningModule, wanted: Classes) -> dict:
    """The data module's loaders Tip-Adapter reads before predicting where its checkpoint has no cache yet or alpha
    and beta were not searched for it (no validation ran): those it builds the cache and searches on."""
    if not isinstance(method, TipAdapter) or (method.has_cache and (method.searched or not method.hparams.search)):
        return {}
    if wanted.datamodule is None:  # (one without a cache is refused with its classes, see trained_classes)
        raise DemoInputError(f"this {type(method).__name__} checkpoint still needs alpha and beta searched on its data "
                             "module's images, which cannot be read here")  # fmt: skip
    names = ("augmented_train_dataloader", SEARCH_SPLITS[method.hparams.search_split])
    return {name: getattr(wanted.datamodule, name) for name in names}


def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    choices = weights.choices(FAMILY, CLASSIFIERS)
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            checkpoint = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True,
                                     label="checkpoint (or type a .ckpt path)")  # fmt: skip
            image = image_input("image")
            names = gr.Textbox(label="class names (optional: one per line, or comma-separated)", lines=3)
            run = gr.Button("Classify", variant="primary")
        with gr.Column():
            probabilities = gr.Label(label="probabilities", num_top_classes=SHOWN_CLASSES)
            seen = gr.Image(label="as the method sees it", type="numpy", format="png")
            about = gr.Markdown()
    singles = examples.single_object_images(folder)
    typed = ", ".join(examples.SINGLE_OBJECTS)
    gr.Examples([[str(path), ""] for path in singles] + [[str(singles[-1]), typed]], inputs=[image, names])

    def answer(choice, path, text, progress=gr.Progress()):
        return classify(weights, choice, open_image(path), text, progress)

    run.click(shown(answer), [checkpoint, image, names], [probabilities, seen, about], api_name="few_shot")
