"""Image towers from timm backbones, and the "timm" model family: open_clip's CLIPs with a timm image tower.

open_clip builds some of its CLIPs (ConvNeXt, Swin, timm ViTs: its configs with a ``timm_model_name``) around a
timm network through its ``TimmModel`` adapter: the network without its classifier (``trunk``) and a projection head
to the joint space (``head``). :class:`TimmImageTower` has the same parameter names, so with CLIP's text tower at the
top level, as in those configs, their state dicts load as they are::

    lit_clip.load_clip("convnext_base_w.bin", architecture="convnext_base_w")

The family's architectures are open_clip's config names (:data:`TIMM_ARCHITECTURES`) and a tiny one that trains on
a CPU. open_clip's timm-tower configs with a text tower of their own (``text.*``: SigLIP, EVA, MobileCLIP, ViTamin)
are not among them. timm is imported when a tower is built, not with lit_clip: it takes ~1.5 s to import.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from lit_clip.models.clip import CLIP, CLIPConfig, TextConfig, VisionConfig
from lit_clip.models.registry import ModelFamily, register_family
from lit_clip.models.transformer import check_images, check_output_fmt, take_indices

# open_clip's heads after the trunk's pooling: dropout + a linear map, or timm's Mlp (hidden 2 x embed_dim, GELU).
PROJECTIONS = ("linear", "mlp")


class TimmImageTower(nn.Module):
    """A timm network without its classifier (``trunk``), pooled, then projected to ``embed_dim`` (``head``).

    Parameter names are those of open_clip's ``TimmModel`` with the same ``pool`` and ``proj``. Multi-scale features
    are timm's own (``forward_intermediates``, ``feature_info``), in the conventions of lit-clip's ViT and ResNet
    towers.
    """

    def __init__(
        self,
        model_name: str,
        embed_dim: int,
        image_size: int = 224,
        pool: str = "avg",
        proj: str = "linear",
        proj_bias: bool = False,
        drop: float = 0.0,
        drop_path: float | None = None,
        **timm_kwargs,
    ):
        """
        Args:
            model_name: a name of ``timm.list_models()``; the trunk is built with random weights.
            embed_dim: the size of the joint embedding space, the head's output.
            image_size: the size of the images. timm builds the trunk for its own default input size, as in
                open_clip; a trunk that takes that size only (a ViT or Swin without ``dynamic_img_size``) must be
                built for ``image_size``: pass ``img_size`` in ``timm_kwargs`` where the two differ.
            pool: the trunk's global pooling by timm's name (``avg``, ``max``, ``token`` ...), or ``""`` for the
                network's own (as open_clip's configs mostly ask).
            proj: the head: ``linear`` or ``mlp`` (see :data:`PROJECTIONS`).
            proj_bias: whether the head's last linear map has a bias.
            drop: the head's dropout.
            drop_path: the trunk's stochastic depth (timm's ``drop_path_rate``); None leaves timm's default.
            timm_kwargs: more arguments of ``timm.create_model``.
        """
        super().__init__()
        import timm  # here, not at the top: importing timm takes ~1.5 s, which every `import lit_clip` would pay
        from timm.layers import Mlp

        if proj not in PROJECTIONS:
            raise ValueError(f"unknown projection head {proj!r} for a timm image tower; expected one of {PROJECTIONS}")
        if drop_path is not None:
            timm_kwargs["drop_path_rate"] = drop_path
        self.model_name, self.image_size, self.output_dim = model_name, image_size, embed_dim
        # The pool is set after building, as open_clip sets it: building a timm ViT with another pool than its
        # default would add a norm (fc_norm) that open_clip's trunk does not have.
        self.trunk = timm.create_model(model_name, pretrained=False, num_classes=0, **timm_kwargs)
        if pool:
            self.trunk.reset_classifier(0, global_pool=pool)
        patch_embed = getattr(self.trunk, "patch_embed", None)
        fixed_size = tuple(patch_embed.img_size) if getattr(patch_embed, "strict_img_size", False) else None
        if fixed_size not in (None, (image_size, image_size)):
            raise ValueError(
                f"timm's {model_name!r} is built for {fixed_size[0]} x {fixed_size[1]} images only, not "
                f"image_size={image_size}: pass img_size={image_size} too (an argument of timm.create_model)"
            )
        width = getattr(self.trunk, "head_hidden_size", self.trunk.num_features)  # what the pooled trunk gives
        self.pooled_width = width  # forward_pooled's
        if proj == "linear":
            head = {"drop": nn.Dropout(drop), "proj": nn.Linear(width, embed_dim, bias=proj_bias)}
        else:
            head = {"mlp": Mlp(width, 2 * embed_dim, embed_dim, bias=(True, proj_bias), drop=(drop, 0.0))}
        self.head = nn.Sequential(OrderedDict(head))
        # timm's description of what forward_intermediates returns, module names relative to this tower.
        self.feature_info = [
            {**info, "module": f"trunk.{info['module']}"} for info in getattr(self.trunk, "feature_info", [])
        ]

    def forward(self, images: Tensor, prompts: Sequence[Tensor | None] | None = None) -> Tensor:
        """The pooled image embedding, ``[batch, embed_dim]``. ``prompts`` (vision prompts) must be None."""
        if prompts is not None:
            raise ValueError(
                f"vision prompts need lit-clip's ViT image tower; this model's is a TimmImageTower ({self.model_name})"
            )
        return self.head(self.forward_pooled(images))

    def forward_pooled(self, images: Tensor) -> Tensor:
        """The trunk's pooled output, before the head: ``[batch, width]``."""
        return self.trunk(self.check(images))

    def check(self, images: Tensor) -> Tensor:
        """``images`` as the trunk takes them, with lit-clip's message for a wrong shape or dtype."""
        return check_images(images, next(self.trunk.parameters()))

    def forward_intermediates(
        self,
        images: Tensor,
        indices: int | Sequence[int] | None = None,
        output_fmt: str = "NCHW",
        norm: bool = False,
        intermediates_only: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """timm's ``forward_intermediates``: the pooled embedding ``[batch, embed_dim]`` and chosen features.

        The features are the trunk's (timm's), as ``feature_info`` describes them: a ViT's blocks (class tokens
        dropped), a ConvNet's stem and stages. ``indices`` picks them as timm does: all if None, the last n if an
        int n, else the listed ones (negative from the end); they come back in order. Each is a map ``[batch,
        channels, H / reduction, W / reduction]`` ("NCHW") or a sequence ``[batch, h * w, channels]`` ("NLC"),
        with timm's final norm if ``norm`` (where the trunk has one). With ``intermediates_only`` the list alone
        comes back and the trunk stops after the last chosen feature.
        """
        check_output_fmt(output_fmt)
        if not hasattr(self.trunk, "forward_intermediates"):
            raise NotImplementedError(f"timm's {self.model_name!r} has no forward_intermediates, so no feature maps")
        take = take_indices(len(self.feature_info), indices)
        output = self.trunk.forward_intermediates(
            self.check(images), indices=take, norm=norm, stop_early=intermediates_only,
            output_fmt="NCHW", intermediates_only=intermediates_only,
        )  # fmt: skip
        intermediates = output if intermediates_only else output[1]
        if output_fmt == "NLC":
            intermediates = [x.flatten(2).transpose(1, 2) for x in intermediates]
        if intermediates_only:
            return intermediates
        return self.head(self.trunk.forward_head(output[0])), intermediates

    def forward_dense(self, images: Tensor) -> Tensor:
        """Not available: MaskCLIP's dense embeddings read the pooling step of lit-clip's own ViT and ResNet towers."""
        raise NotImplementedError(
            "dense embeddings (encode_dense_image, MaskCLIP) need lit-clip's ViT or ModifiedResNet image tower; this "
            f"model's is a TimmImageTower ({self.model_name}). Its feature maps come from forward_intermediates."
        )

    def lock(self, unlocked_groups: int = 0) -> None:
        """LiT, as open_clip's ``TimmModel.lock``: freeze the trunk but its last ``unlocked_groups`` layer groups
        (timm's ``group_matcher``: stem, then stages or blocks, then the final norm); the head stays trainable."""
        from timm.models import group_parameters

        self.trunk.requires_grad_(False)
        if unlocked_groups:
            groups = group_parameters(self.trunk, self.trunk.group_matcher())
            for group in sorted(groups)[-unlocked_groups:]:
                for name in groups[group]:
                    self.trunk.get_parameter(name).requires_grad_(True)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute the trunk's activations in the backward pass (timm's own checkpointing)."""
        self.trunk.set_grad_checkpointing(enabled)


@dataclass(frozen=True)
class TimmArchitecture:
    """An open_clip config with a timm image tower: ``embed_dim``, the ``timm_*`` entries of ``vision_cfg`` and its
    ``image_size``, and ``text_cfg`` (CLIP's text tower)."""

    embed_dim: int
    model_name: str
    image_size: int
    text: TextConfig
    pool: str = ""
    proj: str = "linear"
    drop_path: float | None = None
    quick_gelu: bool = False  # the text tower's activation (OpenAI's QuickGELU in SLIP's)
    timm_kwargs: tuple[tuple[str, object], ...] = ()  # more arguments of timm.create_model


def _text(width: int, heads: int, layers: int = 12) -> TextConfig:
    return TextConfig(width=width, heads=heads, layers=layers)


# open_clip's model_configs/<name>.json (open_clip 3.3) for those with CLIP's text tower, under the same names.
TIMM_ARCHITECTURES: dict[str, TimmArchitecture] = {
    "convnext_tiny": TimmArchitecture(1024, "convnext_tiny", 224, _text(512, 8), drop_path=0.1),
    "convnext_small": TimmArchitecture(512, "convnext_small", 224, _text(512, 8), drop_path=0.1),
    "convnext_base": TimmArchitecture(512, "convnext_base", 224, _text(512, 8), drop_path=0.1),
    "convnext_base_w": TimmArchitecture(640, "convnext_base", 256, _text(640, 10), drop_path=0.1),
    "convnext_base_w_320": TimmArchitecture(640, "convnext_base", 320, _text(640, 10), drop_path=0.1),
    "convnext_large": TimmArchitecture(768, "convnext_large", 224, _text(768, 12), drop_path=0.1),
    "convnext_large_d": TimmArchitecture(768, "convnext_large", 256, _text(768, 12, 16), proj="mlp", drop_path=0.1),
    "convnext_large_d_320": TimmArchitecture(768, "convnext_large", 320, _text(768, 12, 16), proj="mlp", drop_path=0.1),
    "convnext_xlarge": TimmArchitecture(1024, "convnext_xlarge", 256, _text(1024, 16, 20), drop_path=0.1),
    "convnext_xxlarge": TimmArchitecture(1024, "convnext_xxlarge", 256, _text(1024, 16, 24), drop_path=0.1),
    "convnext_xxlarge_320": TimmArchitecture(1024, "convnext_xxlarge", 320, _text(1024, 16, 24), drop_path=0.1),
    "swin_base_patch4_window7_224": TimmArchitecture(640, "swin_base_patch4_window7_224", 224, _text(640, 10)),
    "vit_medium_patch16_gap_256": TimmArchitecture(512, "vit_medium_patch16_gap_256", 256, _text(512, 8)),
    "vit_relpos_medium_patch16_cls_224": TimmArchitecture(512, "vit_relpos_medium_patch16_cls_224", 224, _text(512, 8)),
    # Ours, for a CPU (ShapesWorld at 64 px, short captions): timm's 0.4M-parameter test ResNet, average-pooled and
    # projected linearly, with the text tower of ViT-Tiny-8 / RN-Tiny. With configs/clip/shapes.yaml's settings it
    # reached 0.84 zero-shot top-1 in 300 steps (RN-Tiny 0.58); timm's test ConvNeXt 0.08 (0.09 at lr 5e-4).
    "timm-test_resnet-Tiny": TimmArchitecture(
        128, "test_resnet", 64, TextConfig(context_length=32, width=128, heads=2, layers=4)
    ),
    # SLIP's released models (facebookresearch/SLIP, models.py): a timm ViT's class token projected linearly to 512,
    # OpenAI's text tower. ViT-S is MoCo v3's, with 12 heads where timm's ViT-S has 6.
    **{
        f"SLIP-ViT-{size}-16": TimmArchitecture(
            512, f"vit_{name}_patch16_224", 224, _text(512, 8), pool="token", quick_gelu=True, timm_kwargs=kwargs
        )
        for size, name, kwargs in (("S", "small", (("num_heads", 12),)), ("B", "base", ()), ("L", "large", ()))
    },
}


def build_timm_clip(
    name: str, init_logit_scale: float = math.log(1 / 0.07), init_logit_bias: float | None = None
) -> CLIP:
    """A randomly initialised CLIP of a named architecture of :data:`TIMM_ARCHITECTURES`.

    Its ``config.vision`` records only the image size: the tower is described by the architecture.
    """
    if name not in TIMM_ARCHITECTURES:
        raise ValueError(f"unknown timm architecture {name!r}; known: {', '.join(sorted(TIMM_ARCHITECTURES))}")
    a = TIMM_ARCHITECTURES[name]
    tower = TimmImageTower(
        a.model_name, a.embed_dim, a.image_size, a.pool, a.proj, drop_path=a.drop_path, **dict(a.timm_kwargs)
    )
    config = CLIPConfig(a.embed_dim, VisionConfig(image_size=a.image_size), a.text, quick_gelu=a.quick_gelu)
    return CLIP(config, init_logit_scale, init_logit_bias, visual=tower)


register_family(ModelFamily("timm", lambda: sorted(TIMM_ARCHITECTURES), build_timm_clip))
