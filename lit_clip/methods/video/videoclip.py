"""VideoCLIP (Xu et al., 2021): contrastive pretraining of a video and a text transformer on overlapped video-text
clips in retrieval-augmented batches.

The method. A video is a sequence of per-second features from a frozen video encoder. A small MLP maps them to
video tokens, a transformer encodes ``[CLS] tokens [SEP]``, and the mean of its outputs over the tokens and
``[SEP]`` is the video's vector; a second transformer encodes the text ``[CLS] words [SEP]`` and its mean over the
words and ``[SEP]`` is the text's. Training pairs are *overlapped*: a span of consecutive timed captions and a
video span centred at a random time inside it, so positives are loosely aligned (see
``lit_clip.datamodules.timed_captions``). The loss is InfoNCE both ways over the batch, and the batches are
*retrieval-augmented*: each epoch every training video is embedded (the mean over its clips of the video and text
vectors, averaged) and clustered, and a batch takes its videos from one cluster (hard negatives).

The official code (fairseq ``examples/MMPT``: ``MMFusionSeparate``, ``MMBertForEncoder``, ``VideoTokenMLP``,
``MMContraLoss``, ``projects/retri/videoclip.yaml``):

- Inputs: S3D features, one 512-d vector a second (``max_video_len`` 32). ``VideoTokenMLP``: Linear(512, 768),
  GELU, LayerNorm, Linear(768, 768), initialised as BERT's linear layers (normal, std 0.02).
- Video transformer: BERT's first 6 layers (``bert-base-uncased`` weights, ``num_hidden_video_layers`` 6) on the
  embeddings of ``[CLS]``, the video tokens and ``[SEP]`` (positions 0 to T for ``[CLS]`` and the tokens, and
  ``max_video_len + 1`` for ``[SEP]``; token type 0; padding seconds masked). Text transformer: all of BERT on
  ``[CLS] caption [SEP]``, token type 0. Both pooled by masked mean, ``[CLS]`` left out, ``[SEP]`` in.
- Loss: ``CE(v t^T) + CE(t v^T)`` over the raw dot products of the pooled vectors: no normalisation, no temperature,
  the sum of the two directions; each GPU's batch alone (no gathering across GPUs).
- Batches: 32 videos x 16 clips; Adam (betas 0.9 / 0.98, no weight decay), lr 5e-5, 1000 warm-up updates, then
  polynomial (linear) decay toward ``total_num_update`` 1e6; gradient norm clipped at 2.0; fp16; 25 epochs.
- Retrieval: each epoch (from the first) the videos' vectors go into a faiss index and every batch is drawn from
  the nearest videos of a random one.

Ours, and where it differs on purpose:

- Per-second features come from a frozen CLIP image tower (no gradient, always in eval mode) applied to one frame
  a second (the batch's ``video``; its padding frames are not encoded); precomputed features (S3D) can be given
  instead as the batch's ``features`` with ``feature_dim`` their width (512).
- ``text_encoder="bert"``: the paper's setting, BERT from transformers (``pretrained_text`` a hub id or folder,
  ``bert-base-uncased``; the video transformer from its first ``video_layers`` layers as MMPT's); without
  ``pretrained_text`` a random BERT of ``bert_config`` (tests build a tiny one offline). ``text_encoder="clip"``: a
  CPU setting that reuses the CLIP's own text tower (trained, with CLIP's tokens) and a small random BERT-layer
  video transformer of the CLIP's embedding width, so that a ShapesWorld run can start from the ShapesWorld CLIP.
  Its text vector is the masked mean of the projected tokens after the start token up to the end token.
- The video sequence is padded to the batch's longest clip rather than to ``max_video_len``; positions are MMPT's,
  so the outputs at the real tokens are the same.
- ``gather_negatives`` (default): under DDP, every process's clips are negatives for all (each GPU's batch alone,
  as the official code, with ``gather_negatives=False``). ``temperature``: divide the dot products by it (none by
  default, as the code).
- The learning rate decays linearly to 0 at ``decay_steps``, by default the run's last step (the official 1e6 is
  far past its run: set ``decay_steps: 1000000`` for its nearly constant rate after warm-up). AdamW with
  ``weight_decay`` 0 is Adam. Clip gradients (2.0) and choose fp16 / bf16 with the trainer's options.
- Retrieval-augmented batches (``retrieval_augmented``): before the first epoch and after each epoch but the last,
  the hooks embed every training video with the data module's ``video_embedding_loader()`` and give the
  embeddings to its ``video_clusters``: k-means clusters cut into batches rather than faiss neighbourhoods (see
  ``lit_clip.datamodules.timed_captions``). The clusters are saved in checkpoints.

Evaluation: text-video retrieval over the evaluation clips (one caption each), ranked by the same dot products:
``val/t2v_R@{1,5,10}``, ``val/t2v_MdR``, ``val/t2v_MnR`` and the same ``v2t`` (``retrieval_ranks``), and
``val/loss``.
"""
from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from transformers import AutoTokenizer, BertConfig, BertModel

from lit_clip.checkpoints import load_clip
from lit_clip.distributed import gather_unique
from lit_clip.losses import ClipLoss
from lit_clip.methods.class_sets import evaluation_prefix
from lit_clip.methods.video.frames import masked_mean
from lit_clip.metrics.retrieval import retrieval_ranks
from lit_clip.models import create_model
from lit_clip.tokenizer import trim_padding

# bert-base-uncased's [CLS] and [SEP]: the video transformer's special tokens for a random BERT.
BERT_CLS_ID, BERT_SEP_ID = 101, 102


class VideoTokenMLP(nn.Module):
    """MMPT's ``VideoTokenMLP``: per-second features to video tokens, Linear, GELU, LayerNorm, Linear; initialised as
    BERT initialises its linear layers (normal with std ``initializer_range``, zero bias)."""

    def __init__(self, in_features: int, hidden: int, initializer_range: float = 0.02):
        super().__init__()
        self.linear1 = nn.Linear(in_features, hidden)
        self.activation = nn.GELU()
        self.norm = nn.LayerNorm(hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        for linear in (self.linear1, self.linear2):
            nn.init.normal_(linear.weight, std=initializer_range)
            nn.init.zeros_(linear.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear2(self.norm(self.activation(self.linear1(features))))


def warmup_linear_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, decay_steps: int) -> LambdaLR:
    """fairseq's ``polynomial_decay`` with power 1 and end rate 0: a linear warm-up over ``warmup_steps``, then a
    linear decay to 0 at step ``decay_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, 1 - (step - warmup_steps) / max(1, decay_steps - warmup_steps))

    return LambdaLR(optimizer, factor)


class VideoCLIP(L.LightningModule):
    def __init__(
        self,
        text_encoder: Literal["bert", "clip"] = "clip",
        architecture: str = "RN-Tiny",
        pretrained: str | None = None,
        pretrained_text: str | None = None,
        bert_config: dict | None = None,
        feature_dim: int | None = None,
        video_layers: int = 6,
        max_video_len: int = 32,
        temperature: float | None = None,
        gather_negatives: bool = True,
        retrieval_augmented: bool = True,
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.9, 0.98),
        weight_decay: float = 0.0,
        warmup_steps: int = 1000,
        decay_steps: int | None = None,
    ):
        """
        Args:
            text_encoder: "bert" (the paper's: BERT text and video transformers) or "clip" (the CLIP's text tower and
                a small video transformer of its embedding width: a CPU's).
            architecture, pretrained: the CLIP of the frozen frame encoder (and of the text tower with "clip"):
                ``lit_clip.load_clip(pretrained)``, or a random ``architecture`` when ``pretrained`` is None. Not
                built for "bert" with precomputed features (``feature_dim`` given).
            pretrained_text: "bert": a BERT's hub id or folder (``bert-base-uncased``), the weights of the text
                transformer and of the video transformer's layers, as MMPT loads them.
            bert_config: "bert" without ``pretrained_text``: ``transformers.BertConfig`` arguments of a random BERT
                (default: bert-base's geometry); its vocabulary must hold bert-base-uncased's [CLS] 101 and [SEP] 102.
            feature_dim: the width of precomputed per-second ``features`` (S3D: 512); None: the CLIP image tower's
                embeddings of the batch's ``video``.
            video_layers: layers of the video transformer (MMPT: 6).
            max_video_len: the most seconds of a clip (MMPT: 32); the video [SEP] is at position ``max_video_len + 1``.
            temperature: divide the dot products by this; None: none (the official code).
            gather_negatives: under DDP, score each process's clips against every process's.
            retrieval_augmented: cluster the training videos each epoch for the data module's batches (it needs
                ``video_clusters`` and ``video_embedding_loader``, as ``lit_clip.datamodules.timed_captions``'s).
            lr, betas, weight_decay: AdamW over everything trainable (MMPT: Adam 5e-5, (0.9, 0.98), no decay).
            warmup_steps: linear warm-up (MMPT: 1000).
            decay_steps: the learning rate reaches 0 here; None: at the run's last step.
        """
        super().__init__()
        self.save_hyperparameters()
        if text_encoder not in ("bert", "clip"):
            raise ValueError(f"unknown text_encoder {text_encoder!r}; expected 'bert' or 'clip'")
        if text_encoder == "clip" and (pretrained_text is not None or bert_config):
            raise ValueError("pretrained_text and bert_config describe a BERT: set text_encoder 'bert' to use them")
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be positive or None, got {temperature}")
        self.clip = None
        if text_encoder == "clip" or feature_dim is None:
            self.clip = load_clip(pretrained) if pretrained is not None else create_model(architecture)
            self.clip.requires_grad_(False)  # the frame encoder stays frozen; "clip" trains the text tower below
            self.clip.eval()
        if text_encoder == "clip":
            for part in (self.clip.token_embedding, self.clip.positional_embedding, self.clip.transformer,
                         self.clip.ln_final, self.clip.text_projection):  # fmt: skip
                part.requires_grad_(True)
            width = self.clip.text_projection.shape[1]
            config = BertConfig(
                vocab_size=2, hidden_size=width, num_hidden_layers=video_layers,
                num_attention_heads=max(1, width // 64), intermediate_size=4 * width,
                max_position_embeddings=max_video_len + 2,
            )  # fmt: skip
            self.video_transformer = BertModel(config, add_pooling_layer=False)
            self.video_special_ids = (0, 1)
            self.text_transformer = None
        else:
            self.text_transformer, self.video_transformer, self.video_special_ids = self._berts(
                pretrained_text, bert_config, video_layers
            )
            width = self.text_transformer.config.hidden_size
        if max_video_len + 2 > self.video_transformer.config.max_position_embeddings:
            raise ValueError(
                f"max_video_len {max_video_len} needs {max_video_len + 2} positions; the video transformer has "
                f"{self.video_transformer.config.max_position_embeddings}"
            )
        in_features = feature_dim if feature_dim is not None else self.clip.config.embed_dim
        self.video_mlp = VideoTokenMLP(in_features, width, self.video_transformer.config.initializer_range)
        self.loss = ClipLoss(local_loss=True)
        self._evaluation: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {}
        self._restored_clusters: dict | None = None

    @staticmethod
    def _berts(
        pretrained: str | None, config: dict | None, video_layers: int
    ) -> tuple[BertModel, BertModel, tuple[int, int]]:
        """The text BERT, the video BERT (the first ``video_layers`` layers) and its [CLS] and [SEP] ids."""
        if pretrained is not None:
            if config:
                raise ValueError("give pretrained_text (a BERT's weights) or bert_config (a random BERT), not both")
            text = BertModel.from_pretrained(pretrained, add_pooling_layer=False)
            video = BertModel.from_pretrained(pretrained, num_hidden_layers=video_layers, add_pooling_layer=False)
            tokenizer = AutoTokenizer.from_pretrained(pretrained)
            return text, video, (tokenizer.cls_token_id, tokenizer.sep_token_id)
        text_config = BertConfig(**(config or {}))
        if text_config.vocab_size <= BERT_SEP_ID:
            raise ValueError(
                f"a random BERT's vocabulary must hold bert-base-uncased's [CLS] ({BERT_CLS_ID}) and [SEP] "
                f"({BERT_SEP_ID}), got vocab_size {text_config.vocab_size}"
            )
        video_config = BertConfig(**{**text_config.to_dict(), "num_hidden_layers": video_layers})
        text, video = BertModel(text_config, add_pooling_layer=False), BertModel(video_config, add_pooling_layer=False)
        return text, video, (BERT_CLS_ID, BERT_SEP_ID)

    def train(self, mode: bool = True) -> VideoCLIP:
        super().train(mode)
        if self.clip is not None:  # frozen: no dropout, no batch-norm updates, ever
            (self.clip.visual if self.hparams.text_encoder == "clip" else self.clip).eval()
        return self

    # --- the towers -------------------------------------------------------------------------------
    def per_second_features(self, batch: dict) -> Tensor:
        """``[B, T, D]``: the batch's precomputed ``features``, or the frozen CLIP image tower's embeddings of its
        ``video`` frames (padding frames left zero)."""
        if "features" in batch:
            features = batch["features"]
        elif self.hparams.feature_dim is not None:
            raise ValueError(f"this model takes precomputed features (feature_dim={self.hparams.feature_dim}); the "
                             "batch has no 'features'")  # fmt: skip
        else:
            video, mask = batch["video"], self._frame_mask(batch)
            with torch.no_grad():
                embeddings = self.clip.encode_image(video[mask])
            features = embeddings.new_zeros(*mask.shape, embeddings.shape[-1])
            features[mask] = embeddings
        if features.shape[-1] != self.video_mlp.linear1.in_features:
            raise ValueError(
                f"per-second features of width {features.shape[-1]}; this model's video MLP takes "
                f"{self.video_mlp.linear1.in_features} (feature_dim)"
            )
        return features

    def encode_video(self, batch: dict) -> Tensor:
        """``[B, width]``: the video transformer over ``[CLS]``, the video tokens and ``[SEP]``, mean-pooled over the
        real tokens and ``[SEP]``."""
        features, mask = self.per_second_features(batch), self._frame_mask(batch)
        batch_size, seconds = mask.shape
        if seconds > self.hparams.max_video_len:
            raise ValueError(f"clips of {seconds} seconds are longer than max_video_len {self.hparams.max_video_len}")
        tokens = self.video_mlp(features)
        special = self.video_transformer.embeddings.word_embeddings(
            torch.tensor(self.video_special_ids, device=tokens.device)
        ).to(tokens.dtype)
        embeddings = torch.cat([special[0].expand(batch_size, 1, -1), tokens, special[1].expand(batch_size, 1, -1)], 1)
        positions = torch.cat([torch.arange(seconds + 1), torch.tensor([self.hparams.max_video_len + 1])])
        ones = mask.new_ones(batch_size, 1)
        hidden = self.video_transformer(
            inputs_embeds=embeddings,
            attention_mask=torch.cat([ones, mask, ones], 1).long(),
            position_ids=positions.to(tokens.device)[None],
            token_type_ids=torch.zeros(batch_size, seconds + 2, dtype=torch.long, device=tokens.device),
        ).last_hidden_state
        return masked_mean(hidden, torch.cat([~ones, mask, ones], 1))

    def encode_text(self, text: Tensor) -> Tensor:
        """``[B, width]``: the text tower's outputs mean-pooled over the words and the end token (``[SEP]`` / EOT),
        the start token (``[CLS]`` / SOT) left out."""
        after_start = torch.arange(text.shape[1], device=text.device) > 0
        if self.text_transformer is None:
            tokens, padding = self.clip.encode_text_tokens(text, project=True)
            return masked_mean(tokens, ~padding & after_start)
        mask = text != self.text_transformer.config.pad_token_id
        hidden = self.text_transformer(
            input_ids=text, attention_mask=mask.long(), token_type_ids=torch.zeros_like(text)
        ).last_hidden_state
        return masked_mean(hidden, mask & after_start)

    def forward(self, batch: dict) -> tuple[Tensor, Tensor]:
        """The pooled video and text vectors ``[B, width]`` of a batch of clips and their texts."""
        return self.encode_video(batch), self.encode_text(batch["text"])

    @staticmethod
    def _frame_mask(batch: dict) -> Tensor:
        if "frame_mask" in batch:
            return batch["frame_mask"]
        inputs = batch["features"] if "features" in batch else batch["video"]
        return torch.ones(inputs.shape[:2], dtype=torch.bool, device=inputs.device)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # On the host: texts cut after the batch's longest (exact: padding is masked, or after CLIP's EOT).
        if "text" in batch:
            text = batch["text"]
            if self.text_transformer is None:
                batch["text"] = trim_padding(text)
            else:
                used = (text != self.text_transformer.config.pad_token_id).any(dim=0)
                batch["text"] = text[:, : int(used.nonzero().max()) + 1] if used.any() else text
        return batch

    # --- the loss ---------------------------------------------------------------------------------
    def contrastive_loss(self, video: Tensor, text: Tensor, batch_rows: int | None = None) -> Tensor:
        """MMPT's ``MMContraLoss``: ``CE(v t^T) + CE(t v^T)`` over the batch's dot products (divided by
        ``temperature`` when set); under DDP against every process's clips with ``gather_negatives``.
        ``batch_rows``: the clips every process was meant to have, where bad videos were left out."""
        scale = 1.0 if self.hparams.temperature is None else 1.0 / self.hparams.temperature
        if self.hparams.gather_negatives:  # ClipLoss: the mean of the two directions
            return 2 * self.loss(video, text, scale, batch_rows)["contrastive_loss"]
        logits = scale * video @ text.T
        labels = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)

    @staticmethod
    def _batch_rows(batch: dict) -> int | None:
        """The clips of the batch had no video been left out (bad samples): videos x clips per video."""
        if "skipped_index" not in batch:
            return None
        rows = batch["index"].shape[0]
        clips_per_video = rows // batch["index"].unique().numel()
        return rows + batch["skipped_index"].numel() * clips_per_video

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        video, text = self(batch)
        loss = self.contrastive_loss(video, text, self._batch_rows(batch))
        rows = video.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=rows)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=rows)
        return loss

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.AdamW(
            [p for p in self.parameters() if p.requires_grad], lr=h.lr, betas=tuple(h.betas), eps=1e-8,
            weight_decay=h.weight_decay,
        )  # fmt: skip
        decay_steps = h.decay_steps if h.decay_steps is not None else int(self.trainer.estimated_stepping_batches)
        schedule = warmup_linear_decay(optimizer, h.warmup_steps, decay_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- retrieval-augmented batches --------------------------------------------------------------
    @torch.no_grad()
    def video_embeddings(self, loader) -> tuple[Tensor, Tensor]:
        """``(index, embedding)`` of every video of ``loader`` (batches of whole videos' clips): MMPT's
        ``VideoVectorPool``, the mean over a video's clips of ``(video vector + text vector) / 2``."""
        indices, embeddings = [], []
        for batch in loader:
            if "index" not in batch:  # every video of the batch was bad
                continue
            batch = self.transfer_batch_to_device(self.on_before_batch_transfer(batch, 0), self.device, 0)
            with self.trainer.precision_plugin.forward_context():
                video, text = self(batch)
            pooled = ((video + text) / 2).float()
            index, clip_video = batch["index"].unique(return_inverse=True)
            sums = pooled.new_zeros(index.numel(), pooled.shape[1]).index_add_(0, clip_video, pooled)
            indices.append(index)
            embeddings.append(sums / torch.bincount(clip_video)[:, None])
        return torch.cat(indices), torch.cat(embeddings)

    def refresh_video_clusters(self) -> None:
        """Embed every training video and give the embeddings to the data module's ``video_clusters``."""
        datamodule = self.trainer.datamodule
        clusters = getattr(datamodule, "video_clusters", None)
        if clusters is None or not hasattr(datamodule, "video_embedding_loader"):
            raise ValueError(
                f"retrieval_augmented batches need a data module with `video_clusters` and `video_embedding_loader` "
                f"(lit_clip.datamodules.timed_captions), got {type(datamodule).__name__}; or set retrieval_augmented: "
                "false"
            )
        loader = datamodule.video_embedding_loader()
        was_training = self.training
        self.eval()
        index, embeddings = gather_unique(*self.video_embeddings(loader))
        self.train(was_training)
        # Videos that could not be read (bad samples) sit at the mean, so that every index has a cluster.
        full = embeddings.mean(dim=0, keepdim=True).repeat(len(loader.dataset), 1)
        full[index] = embeddings
        clusters.set_embeddings(full.cpu(), world_size=self.trainer.world_size)

    def on_fit_start(self) -> None:
        if not self.hparams.retrieval_augmented:
            return
        if self._restored_clusters is not None:  # resumed: the batches of the checkpoint's epoch
            self.trainer.datamodule.video_clusters.load_state_dict(self._restored_clusters)
            return
        self.refresh_video_clusters()

    def on_train_epoch_end(self) -> None:
        trainer = self.trainer
        last_epoch = trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch + 1
        out_of_steps = 0 <= trainer.max_steps <= trainer.global_step
        if self.hparams.retrieval_augmented and not (last_epoch or out_of_steps or trainer.should_stop):
            self.refresh_video_clusters()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        clusters = getattr(self.trainer.datamodule, "video_clusters", None) if self._trainer is not None else None
        if self.hparams.retrieval_augmented and clusters is not None and clusters.assignment is not None:
            checkpoint["video_clusters"] = clusters.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._restored_clusters = checkpoint.get("video_clusters")

    # --- evaluation -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._evaluation = {}

    def on_test_epoch_start(self) -> None:
        self._evaluation = {}

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, "val", dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, "test", dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_retrieval("val")

    def on_test_epoch_end(self) -> None:
        self._log_retrieval("test")

    def _evaluation_step(self, batch: dict, stage: str, dataloader_idx: int) -> None:
        if "index" not in batch:  # every clip of the batch was bad
            return
        video, text = self(batch)
        prefix = evaluation_prefix(self.trainer.datamodule, stage, dataloader_idx)
        loss = self.contrastive_loss(video, text, self._batch_rows(batch))
        self.log(f"{stage}/{prefix}loss", loss, batch_size=video.shape[0], add_dataloader_idx=False, sync_dist=True)
        self._evaluation.setdefault(dataloader_idx, []).append((batch["index"], video.float(), text.float()))

    def _log_retrieval(self, stage: str) -> None:
        for dataloader_idx, parts in sorted(self._evaluation.items()):
            index, video, text = gather_unique(*(torch.cat(values) for values in zip(*parts)))
            similarity = text @ video.T  # [texts, videos]: clip k's caption is text k
            right = torch.arange(index.numel(), device=similarity.device)
            prefix = evaluation_prefix(self.trainer.datamodule, stage, dataloader_idx)
            for direction, scores in (("t2v", similarity), ("v2t", similarity.T)):
                for name, value in retrieval_ranks(scores, right).items():
                    self.log(f"{stage}/{prefix}{direction}_{name}", value, add_dataloader_idx=False)
        self._evaluation = {}

    @torch.no_grad()
    def similarity_matrix(self, batch: dict) -> tuple[Tensor, list[str]]:
        """``[videos, captions]`` dot products of the batch's clips and captions (what retrieval ranks by), and the
        captions."""
        video, text = self(self.on_before_batch_transfer(dict(batch), 0))
        return (video @ text.T).float(), list(batch["caption"])

    # --- prediction -------------------------------------------------------------------------------
    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """L2-normalised video (and, where the batch has texts, text) vectors in fp32, with the batch's paths,
        indices and captions."""
        prediction = {key: batch[key] for key in ("path", "index", "caption") if key in batch}
        if "video" in batch or "features" in batch:
            prediction["video_embedding"] = F.normalize(self.encode_video(batch).float(), dim=-1)
        if "text" in batch:
            prediction["text_embedding"] = F.normalize(self.encode_text(batch["text"]).float(), dim=-1)
        return prediction
