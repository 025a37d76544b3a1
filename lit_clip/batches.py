"""The batch formats: what data modules yield and methods consume, written down once.

Every data module's loaders give one of these dicts (after collation), and every
method's ``*_step`` reads one of them, so a new data set works with every method of
its task and a new method with every data set. ``B`` is the batch size; images are
float ``[B, 3, H, W]`` normalised with the CLIP mean and std; ``index`` numbers the
samples of a split so that evaluation counts each once under DDP.

Any batch may carry ``skipped_index`` (long ``[k]``): samples of the batch that could
not be read and were left out (see ``lit_clip.datamodules.images.RobustSamples``). An
evaluation batch in which every sample was bad holds ``skipped_index`` alone (and an audio batch's
``sample_rate``).

Data modules and methods import from here; this module imports neither.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from torch import Tensor

# Segmentation masks mark pixels that belong to no class (borders, void) with this value.
IGNORE_INDEX = 255


class PairsBatch(TypedDict, total=False):
    """Image-caption pairs (CLIP pretraining). Training: one caption per image.

    ``text``: long ``[B, context_length]`` token ids; ``caption``: the B strings.
    Retrieval evaluation batches hold every caption of their images instead:
    ``text`` ``[T, context_length]``, ``text_index`` ``[T]`` (numbered over the split),
    ``text_image_index`` ``[T]`` (each caption's image ``index``), ``caption`` (T strings).
    """

    image: Tensor
    text: Tensor
    caption: list[str]
    index: Tensor
    text_index: Tensor
    text_image_index: Tensor
    key: list[str]
    skipped_index: Tensor


class ClassificationBatch(TypedDict, total=False):
    """Labelled images: ``label`` long ``[B]``, indices into the data module's ``classnames``."""

    image: Tensor
    label: Tensor
    index: Tensor
    skipped_index: Tensor


class SegmentationBatch(TypedDict, total=False):
    """Images with a class per pixel: ``mask`` long ``[B, H, W]``, ``IGNORE_INDEX`` where no class applies.

    Few-shot segmentation episodes label each image over its own labels: ``labels`` long ``[B, K]`` holds
    indices into the label set, and a mask value ``k`` means ``labels[b, k]`` (an episode: ``[others, its
    class]``, mask 1 on the class and 0 elsewhere).
    """

    image: Tensor
    mask: Tensor
    labels: Tensor
    index: Tensor
    skipped_index: Tensor


class DetectionTarget(TypedDict, total=False):
    """One image's objects: ``boxes`` float ``[N, 4]`` as (x1, y1, x2, y2) in pixels of the batch's image,
    ``labels`` long ``[N]`` (indices into ``classnames``), ``image_id`` (the annotation file's id, for
    COCO-style evaluation), optional ``masks`` bool ``[N, H, W]``.

    Training images with a region cache (ViLD's distillation targets, see :mod:`lit_clip.region_cache`) also
    carry ``regions`` float ``[M, 4]``, boxes in the same pixels, and ``region_embeddings`` ``[M, D]``, the
    CLIP image embedding of each region's crops."""

    boxes: Tensor
    labels: Tensor
    image_id: int
    masks: Tensor
    regions: Tensor
    region_embeddings: Tensor


class DetectionBatch(TypedDict, total=False):
    """Images with boxes: ``targets`` holds one :class:`DetectionTarget` per image (their counts differ).

    Images keep their own size (after any training augmentation) and are padded with 0 at the bottom and the
    right to the batch's largest; ``image_size`` long ``[B, 2]`` holds each one's (height, width) before padding.
    Evaluation images are at their file's resolution, so boxes compare with the annotation file's.
    """

    image: Tensor
    image_size: Tensor
    targets: list[DetectionTarget]
    index: Tensor
    skipped_index: Tensor


class GroundingTarget(DetectionTarget, total=False):
    """One image's grounded phrases: ``phrases[k]`` the character spans ``[(start, end), ...]`` (end exclusive) of
    phrase ``k`` in the image's caption (MDETR's ``tokens_positive``: a phrase may be several pieces), and each
    box's ``labels[n]`` the index of the phrase it grounds. A phrase may ground several boxes; a caption may hold
    words no box grounds (the negative names of a detection prompt)."""

    phrases: list[list[tuple[int, int]]]


class GroundingBatch(TypedDict, total=False):
    """Images with a caption whose phrases name their boxes (GLIP's grounding): the images as a
    :class:`DetectionBatch`'s (own sizes, padded, ``image_size``), ``caption`` the B strings, ``targets`` one
    :class:`GroundingTarget` per image. Tokenising is the method's: it maps the character spans to its own
    tokenizer's tokens."""

    image: Tensor
    image_size: Tensor
    caption: list[str]
    targets: list[GroundingTarget]
    index: Tensor
    skipped_index: Tensor


class AudioBatch(TypedDict, total=False):
    """Sound clips: ``audio`` float ``[B, channels, samples]`` at ``sample_rate`` Hz; with ``image`` and
    ``text`` for the audio-image-text triplets of AudioCLIP, ``label`` for classification."""

    audio: Tensor
    sample_rate: int
    image: Tensor
    text: Tensor
    label: Tensor
    index: Tensor
    skipped_index: Tensor


class VideoBatch(TypedDict, total=False):
    """Clips of frames: ``video`` float ``[B, T, 3, H, W]`` normalised as images, ``frame_mask`` bool ``[B, T]`` (False
    for the padding frames of short videos, which come last); ``text`` for retrieval, ``label`` for actions.

    Evaluation batches with several captions per video (MSVD) hold every caption: ``text`` ``[N, L]``, ``text_index``
    ``[N]`` (numbered over the split) and ``text_video_index`` ``[N]`` (each caption's video ``index``), as
    ``PairsBatch``'s ``text_image_index``. Several temporal views of a video (``num_clips`` at test) come as ``video``
    ``[B, V, T, 3, H, W]`` and ``frame_mask`` ``[B, V, T]``, the other keys one per video. VideoCLIP's precomputed
    per-second features come as ``features`` ``[B, T, D]`` instead of ``video``."""

    video: Tensor
    frame_mask: Tensor
    features: Tensor
    text: Tensor
    caption: list[str]
    text_index: Tensor
    text_video_index: Tensor
    label: Tensor
    path: list[str]
    index: Tensor
    skipped_index: Tensor


class PointCloudBatch(TypedDict, total=False):
    """Point clouds: ``points`` float ``[B, N, 3]`` (x, y, z), ``label`` long ``[B]``."""

    points: Tensor
    label: Tensor
    index: Tensor
    skipped_index: Tensor


class DepthBatch(TypedDict, total=False):
    """Images with metric depth: ``depth`` float ``[B, H, W]`` in metres, 0 where there is no measurement;
    ``evaluation_mask`` bool ``[B, H, W]``, when present: the pixels a benchmark scores (NYU's Eigen crop, KITTI's
    Garg crop), the others are left out of the metrics as unmeasured pixels are."""

    image: Tensor
    depth: Tensor
    evaluation_mask: Tensor
    index: Tensor
    skipped_index: Tensor


class GenerationBatch(TypedDict, total=False):
    """One optimisation step of CLIP-guided generation: ``step`` long ``[1]``, its number. The targets (prompts,
    pictures) are the data module's, read once by the method (see :mod:`lit_clip.datamodules.generation`)."""

    step: Tensor


class QuestionsBatch(TypedDict, total=False):
    """Visual question answering. ``question``: long ``[B, max_tokens]`` word ids (0 pads, 1 is an unknown word);
    ``answer_scores``: float ``[B, A]``, each answer's VQA accuracy against the human answers (the soft target);
    ``question_type``: long ``[B]``, an index into the data module's ``question_types``; ``question_text``,
    ``answers_text`` (the human answers, joined by "|"): the B strings, for pictures."""

    image: Tensor
    question: Tensor
    answer_scores: Tensor
    question_type: Tensor
    question_text: list[str]
    answers_text: list[str]
    index: Tensor


class CaptioningBatch(TypedDict, total=False):
    """Image captioning. ``captions``: long ``[B, R, max_words]`` word ids of R captions per image (0 pads, 1 is an
    unknown word; no start or end word), and the same R captions as text, ``caption_text`` (B lists);
    ``references``: every reference caption of each image, as text (B lists), what the evaluation and
    self-critical training score against."""

    image: Tensor
    captions: Tensor
    caption_text: list[list[str]]
    references: list[list[str]]
    index: Tensor


@dataclass(frozen=True)
class EvaluationSet:
    """A set of classes an evaluation loader is labelled over; ``name`` prefixes its metrics ("" for none).

    ``episodic``: the loader's batches are few-shot segmentation episodes (see :class:`SegmentationBatch`),
    scored per class as those benchmarks do; ``classnames[0]`` is then the label of everything else ("others").
    ``phrase_grounding``: the loader's batches are :class:`GroundingBatch` es scored by phrase-grounding recall
    (each caption is its own vocabulary; ``classnames`` is empty).
    """

    name: str
    classnames: tuple[str, ...]
    episodic: bool = False
    phrase_grounding: bool = False
    # Detection: named subsets of the label ids, scored apart (ViLD's "base" and "novel"), and the ground truth
    # to score against (an annotation file, or its loaded pycocotools / lvis object, with its backend "coco" or
    # "lvis"); None: the batches' targets.
    subsets: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    annotations: Any = None
    backend: str = "coco"
