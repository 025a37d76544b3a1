"""SLIP (Mu et al., "SLIP: Self-supervision meets Language-Image Pre-training", ECCV 2022), as the released code
(facebookresearch/SLIP) trains it.

1. **CLIP**: each image's CLIP view (a crop of 50-100 % of it) against its caption, CLIP's symmetric InfoNCE
   with a learned temperature.
2. **SimCLR on the same image tower**: two more views of each image (SimCLR's augmentations,
   :func:`lit_clip.transforms.with_ssl_views`; the data module's ``ssl_views: true``) through the image tower,
   each view's pooled feature (before CLIP's projection) through the SSL head: a 3-layer MLP, width -> 4096 ->
   4096 -> 256, BatchNorm and ReLU after the first two layers. NT-Xent at temperature 0.1 pulls the two views of
   an image together against both views of every other image of every process
   (:class:`~lit_clip.losses.NTXentLoss`).
3. **Loss** = CLIP + ``ssl_scale`` (1.0) x SimCLR.
4. **Optimisation**: AdamW (the paper's lr 3e-3, weight decay 0.1, betas (0.9, 0.98), eps 1e-8 at batch 4096),
   no decay on vectors and on parameters named bias / ln / bn (SLIP's rule: position embeddings are decayed),
   linear warm-up, then cosine decay to 1e-5 (``min_lr_ratio``); the logit scale clamped to [0, ln 100].

The SSL head's BatchNorm needs a real batch: SLIP's issue #7 reached chance-level zero-shot with 8 images a
GPU. Under DDP on GPUs the head's BatchNorm is synchronised over processes (SyncBatchNorm, as the released
code); PyTorch's SyncBatchNorm does not run on CPUs, where each process normalises its own views. A warning
says when a view's batch (over every process) is below :data:`MIN_SSL_BATCH`.

Differences from the released code: the CLIP loss gathers features **with** gradient under DDP (the released
one gathers the other processes' features without gradient, which its issue #31 reports; the same at one
GPU); images are normalised with CLIP's mean and std (the released code: ImageNet's), as every lit-clip data
module does; the warm-up starts at 0 (the released: 1e-6).
"""
from __future__ import annotations

from collections import OrderedDict

from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lit_clip.batches import PairsBatch
from lit_clip.distributed import distributed_rank_and_size
from lit_clip.losses import NTXentLoss
from lit_clip.methods.pretraining.clip_pretraining import CLIPPretraining, batch_rows
from lit_clip.optim import weight_decay_groups

# Fewer images than this in a view's batch make the SSL head's BatchNorm statistics too noisy to train on.
MIN_SSL_BATCH = 32


def ssl_head(width: int, hidden: int = 4096, output: int = 256) -> nn.Sequential:
    """SLIP's SSL head (``_build_mlp``, its module names): linear, BatchNorm, ReLU, twice, then linear."""
    return nn.Sequential(
        OrderedDict(
            [
                ("layer1", nn.Linear(width, hidden)),
                ("bn1", nn.BatchNorm1d(hidden)),
                ("relu1", nn.ReLU(inplace=True)),
                ("layer2", nn.Linear(hidden, hidden)),
                ("bn2", nn.BatchNorm1d(hidden)),
                ("relu2", nn.ReLU(inplace=True)),
                ("layer3", nn.Linear(hidden, output)),
            ]
        )
    )


class SLIPPretraining(CLIPPretraining):
    def __init__(
        self,
        architecture: str = "ViT-Tiny-8",
        pretrained: str | None = None,
        ssl_scale: float = 1.0,
        ssl_temperature: float = 0.1,
        ssl_hidden_dim: int = 4096,
        ssl_embed_dim: int = 256,
        lr: float = 3e-3,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        warmup_steps: int = 500,
        min_lr_ratio: float = 1e-5 / 3e-3,
        grad_checkpointing: bool = False,
        compile: bool = False,
    ):
        """
        Args:
            architecture, pretrained: the CLIP to train (see ``CLIPPretraining``); the paper's is ``ViT-B-16``.
            ssl_scale: the SimCLR loss's weight (SLIP's ``--ssl-scale``, 1.0).
            ssl_temperature: NT-Xent's temperature (``--ssl-temp``, 0.1).
            ssl_hidden_dim, ssl_embed_dim: the SSL head's hidden and output sizes (``--ssl-mlp-dim`` 4096,
                ``--ssl-emb-dim`` 256).
            lr, weight_decay, betas, eps: AdamW (SLIP's 3e-3 at batch 4096, 0.1, (0.9, 0.98), 1e-8).
            warmup_steps, min_lr_ratio: linear warm-up (SLIP: one epoch), then cosine decay to ``min_lr_ratio * lr``
                (SLIP's 1e-5 = lr / 300).
            grad_checkpointing, compile: as ``CLIPPretraining``'s.
        """
        super().__init__(
            architecture=architecture,
            pretrained=pretrained,
            lr=lr,
            weight_decay=weight_decay,
            betas=betas,
            eps=eps,
            warmup_steps=warmup_steps,
            min_lr_ratio=min_lr_ratio,
            grad_checkpointing=grad_checkpointing,
            compile=compile,
        )
        self.save_hyperparameters()
        self.ssl_head = ssl_head(self.model.image_pooled_width, ssl_hidden_dim, ssl_embed_dim)
        self.ssl_loss = NTXentLoss(ssl_temperature)
        self._warned_small_batch = False

    def setup(self, stage: str) -> None:
        # Before the strategy wraps the module in DDP: the released code's SyncBatchNorm, where PyTorch has one.
        trainer = self.trainer
        if stage == "fit" and trainer.world_size > 1 and trainer.strategy.root_device.type != "cpu":
            self.ssl_head = nn.SyncBatchNorm.convert_sync_batchnorm(self.ssl_head)

    def loss_terms(self, batch: PairsBatch) -> dict[str, Tensor]:
        """``contrastive_loss`` (CLIP's, on the ``image`` view) and ``ssl_loss`` (SimCLR's on ``ssl_view_1`` and
        ``ssl_view_2``, weighted by ``ssl_scale``)."""
        if "ssl_view_1" not in batch or "ssl_view_2" not in batch:
            raise ValueError(
                "SLIP needs two SSL views of every training image (ssl_view_1, ssl_view_2): give the data module "
                f"ssl_views: true; this batch holds {sorted(batch)}"
            )
        self._check_ssl_batch(batch["ssl_view_1"].shape[0])
        terms = super().loss_terms(batch)
        # One pass of the tower per view, as the released code: the head's BatchNorm normalises each view apart.
        ssl_1 = self.ssl_head(self.model.encode_image_pooled(batch["ssl_view_1"]))
        ssl_2 = self.ssl_head(self.model.encode_image_pooled(batch["ssl_view_2"]))
        ssl = self.ssl_loss(ssl_1, ssl_2, batch_rows(batch))["ssl_loss"]
        return {**terms, "ssl_loss": self.hparams.ssl_scale * ssl}

    def _check_ssl_batch(self, local_batch: int) -> None:
        views = local_batch * distributed_rank_and_size()[1]
        if views < MIN_SSL_BATCH and not self._warned_small_batch:
            self._warned_small_batch = True
            rank_zero_warn(
                f"SLIP's SSL head normalises each view over {views} images (batch_size x processes); below "
                f"{MIN_SSL_BATCH} its BatchNorm statistics are too noisy to learn from (SLIP's issue #7 stayed at "
                "chance with 16): raise batch_size"
            )

    def parameter_groups(self) -> list[dict]:
        """The CLIP and the SSL head, with SLIP's decay rule: no decay on vectors (gains, biases, the logit scale)
        and on parameters whose name holds ``bias``, ``ln`` or ``bn``; everything else decayed."""
        named = [*self.model.named_parameters(), *self.ssl_head.named_parameters(prefix="ssl_head")]
        return weight_decay_groups(named, self.hparams.weight_decay, exempt=slip_exempt_from_weight_decay)


def slip_exempt_from_weight_decay(name: str, param: nn.Parameter) -> bool:
    """SLIP's rule (``main.py``): vectors, and every parameter named ``*bias*``, ``*ln*`` or ``*bn*``."""
    return param.ndim < 2 or any(part in name for part in ("bias", "ln", "bn"))
