"""Prompt template sets for zero-shot classifiers: format strings with one ``{}`` for the class name, and
optionally ``{article}`` for its indefinite article ("a" or "an", as ViLD's templates write it).

``resolve_templates`` turns a config value (a set's name or an explicit list) into
the list of templates that :func:`lit_clip.zeroshot.build_zeroshot_classifier` formats with :func:`fill_template`.
"""
from __future__ import annotations

from string import Formatter
from typing import Sequence

# OpenAI's 80 ImageNet templates (CLIP's "Prompt_Engineering_for_ImageNet" notebook), in
# their order: the ensemble behind the published ImageNet zero-shot numbers.
OPENAI_IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

# The 7 of those that the same notebook found best as a small ensemble.
SIMPLE_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

# CoOp's single hand-written prompt per few-shot data set (CUSTOM_TEMPLATES in its zero-shot CLIP
# trainer): the zero-shot baseline of CoOp, CoCoOp, MaPLe, CLIP-Adapter and Tip-Adapter.
COOP_TEMPLATES: dict[str, str] = {
    "ImageNet": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "OxfordPets": "a photo of a {}, a type of pet.",
    "StanfordCars": "a photo of a {}.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "Food101": "a photo of {}, a type of food.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "SUN397": "a photo of a {}.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "UCF101": "a photo of a person doing {}.",
}

# ViLD's prompt ensemble: the ViLD demo's ``multiple_templates`` (tensorflow/tpu
# models/official/detection/projects/vild/ViLD_demo.ipynb, its "for CLIP text embeddings" cell, in its order):
# 63 templates: 58 of OpenAI's ImageNet ones, some with ``{article}`` for their "a", and 5 "... in the scene." ones.
_VILD_DEMO_TEMPLATES: tuple[str, ...] = (
    "There is {article} {} in the scene.",
    "There is the {} in the scene.",
    "a photo of {article} {} in the scene.",
    "a photo of the {} in the scene.",
    "a photo of one {} in the scene.",
    "itap of {article} {}.",
    "itap of my {}.",  # itap: I took a picture of
    "itap of the {}.",
    "a photo of {article} {}.",
    "a photo of my {}.",
    "a photo of the {}.",
    "a photo of one {}.",
    "a photo of many {}.",
    "a good photo of {article} {}.",
    "a good photo of the {}.",
    "a bad photo of {article} {}.",
    "a bad photo of the {}.",
    "a photo of a nice {}.",
    "a photo of the nice {}.",
    "a photo of a cool {}.",
    "a photo of the cool {}.",
    "a photo of a weird {}.",
    "a photo of the weird {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of a clean {}.",
    "a photo of the clean {}.",
    "a photo of a dirty {}.",
    "a photo of the dirty {}.",
    "a bright photo of {article} {}.",
    "a bright photo of the {}.",
    "a dark photo of {article} {}.",
    "a dark photo of the {}.",
    "a photo of a hard to see {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of {article} {}.",
    "a low resolution photo of the {}.",
    "a cropped photo of {article} {}.",
    "a cropped photo of the {}.",
    "a close-up photo of {article} {}.",
    "a close-up photo of the {}.",
    "a jpeg corrupted photo of {article} {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of {article} {}.",
    "a blurry photo of the {}.",
    "a pixelated photo of {article} {}.",
    "a pixelated photo of the {}.",
    "a black and white photo of the {}.",
    "a black and white photo of {article} {}.",
    "a plastic {}.",
    "the plastic {}.",
    "a toy {}.",
    "the toy {}.",
    "a plushie {}.",
    "the plushie {}.",
    "a cartoon {}.",
    "the cartoon {}.",
    "an embroidered {}.",
    "the embroidered {}.",
    "a painting of the {}.",
    "a painting of a {}.",
)
# As the demo builds its text embeddings by default (``this_is=True``): "This is " before every prompt that starts
# with "a" or "the" ("This is a photo of an apple."); "There is ..." and "itap of ..." stay as they are.
VILD_TEMPLATES: tuple[str, ...] = tuple(
    "This is " + template if template.startswith(("a", "the")) else template for template in _VILD_DEMO_TEMPLATES
)

_NAMED_SETS: dict[str, tuple[str, ...]] = {
    "openai_imagenet": OPENAI_IMAGENET_TEMPLATES,
    "simple": SIMPLE_TEMPLATES,
    "vild": VILD_TEMPLATES,
    **{f"coop:{dataset}": (template,) for dataset, template in COOP_TEMPLATES.items()},
}


def resolve_templates(spec: str | Sequence[str]) -> list[str]:
    """The templates a config names: "openai_imagenet", "simple", "vild", "coop:<DataSet>", or an explicit list.

    Every template of an explicit list must hold exactly one ``{}``, and may hold ``{article}``.
    """
    if isinstance(spec, str):
        if spec not in _NAMED_SETS:
            raise ValueError(
                f"unknown template set {spec!r}; expected one of {list(_NAMED_SETS)} "
                'or a list of templates such as ["a photo of a {}."]'
            )
        return list(_NAMED_SETS[spec])
    templates = list(spec)
    if not templates:
        raise ValueError(f"the template list is empty; give templates or one of the named sets {list(_NAMED_SETS)}")
    for template in templates:
        if not _has_one_slot(template):
            raise ValueError(
                f"template {template!r} must be a string with exactly one '{{}}' for the class name (and "
                f"optionally '{{article}}' for its 'a' / 'an'); "
                f"or use one of the named sets {list(_NAMED_SETS)}"
            )
    return templates


def fill_template(template: str, name: str) -> str:
    """The prompt of a class: ``name`` in the template's ``{}``, and its article in ``{article}`` if there is one."""
    return template.format(name, article=article(name))


def article(name: str) -> str:
    """The indefinite article before ``name``, by the ViLD demo's rule: "an" if it starts with a vowel letter, else
    "a" (by spelling, not sound: "an umbrella", and "an unicorn" too)."""
    return "an" if name[:1].lower() in ("a", "e", "i", "o", "u") else "a"


def _has_one_slot(template: object) -> bool:
    """True for a string whose replacement fields are one bare ``{}`` and any number of ``{article}`` (no other name,
    conversion or format spec)."""
    if not isinstance(template, str):
        return False
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(template) if name is not None]
    except ValueError:  # unbalanced braces
        return False
    return [field for field in fields if field != ("article", "", None)] == [("", "", None)]


# ActionCLIP's 16 prompts for action names (sallymmx/ActionCLIP, utils/Text_Prompt.py, in its order): each training
# clip is paired with one of them drawn at random, and test scores average over all 16.
ACTIONCLIP_TEMPLATES: tuple[str, ...] = (
    "a photo of action {}",
    "a picture of action {}",
    "Human action of {}",
    "{}, an action",
    "{} this is an action",
    "{}, a video of action",
    "Playing action of {}",
    "{}",
    "Playing a kind of action, {}",
    "Doing a kind of action, {}",
    "Look, the human is {}",
    "Can you recognize the action of {}?",
    "Video classification of {}",
    "A video of {}",
    "The man is {}",
    "The woman is {}",
)
_NAMED_SETS["actionclip"] = ACTIONCLIP_TEMPLATES

# PointCLIP's zero-shot prompt for views projected from a point cloud (ZrrSkywalker/PointCLIP, V2 too).
POINTCLIP_TEMPLATES: tuple[str, ...] = ("point cloud depth map of a {}.",)
_NAMED_SETS["pointclip"] = POINTCLIP_TEMPLATES

# DepthCLIP's distance words, nearest first, and the depth in metres each stands for (Adonis-galaxy/DepthCLIP,
# monoclip.py), with its prompt: the depth classifier's "classes", and 3D ShapesWorld's vocabulary of distance.
DEPTHCLIP_WORDS: tuple[str, ...] = ("giant", "extremely close", "close", "not in distance", "a little remote", "far",
                                    "unseen")
DEPTHCLIP_BINS: tuple[float, ...] = (1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00)
