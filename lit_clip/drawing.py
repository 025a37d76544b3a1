"""Every picture lit-clip logs, drawn in one place with Pillow and torchvision (no matplotlib).

One convention throughout: a picture is a uint8 numpy array ``[H, W, 3]`` (RGB), what Pillow reads and
writes and what TensorBoard's ``add_image(tag, picture, step, dataformats="HWC")`` takes. Every function
takes its images in that form (:func:`to_uint8_image` turns the models' normalised tensors into it) and
returns one; masks, boxes, labels, scores and similarities may be CPU tensors or arrays. Callbacks collect
data and log; the drawing is here, so every picture shares its fonts, colours and layout.
"""
from __future__ import annotations

import colorsys
from collections.abc import Collection, Sequence
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from lit_clip.batches import IGNORE_INDEX
from lit_clip.transforms import denormalize

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

MARGIN = 8  # pixels around and between the parts of a picture
TEXT_PX = 13  # font size of captions, legends and labels: readable at TensorBoard's native image size
BAR_PX = 16  # width of the similarity figure's colour bar
# The similarity colour scale: viridis at 0, 1/4, 1/2, 3/4 and 1, dark blue to yellow, evenly rising in
# lightness, so equal steps in value look like equal steps in colour.
_SCALE = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64)
_LUMA = np.array([0.299, 0.587, 0.114])  # a colour's lightness, for the colour of text on it
# Open-vocabulary detection's boxes: base classes (trained on) in lime, novel ones in magenta, complementary
# colours that differ from each other most and are neither of ShapesWorld's object colours.
BASE_COLOUR: RGB = (0, 255, 0)
NOVEL_COLOUR: RGB = (255, 0, 255)


def to_uint8_image(images: Tensor) -> np.ndarray:
    """Image tensor(s) normalised with CLIP's mean and std, ``[3, H, W]`` or ``[B, 3, H, W]``, as picture(s)
    ``[H, W, 3]`` or ``[B, H, W, 3]``."""
    pixels = (denormalize(images) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return pixels[0] if images.dim() == 3 else pixels


def palette(n: int) -> list[RGB]:
    """``n`` bright colours, hues a golden-ratio step apart, so that each differs most from those just before it.

    Pictures hand them out to the classes present, in order: the colours of one picture always differ (hues
    by class index would repeat among 65 ShapesWorld classes), though a class's colour may change between them.
    """
    hues = [(0.02 + 0.618034 * k) % 1 for k in range(n)]
    return [tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.8, 0.95)) for hue in hues]


def caption_grid(images: Sequence[np.ndarray], captions: Sequence[str], px: int = 96) -> np.ndarray:
    """Images side by side, ``px`` pixels a side, each with its caption wrapped beneath: what a batch shows."""
    font = _font(TEXT_PX)
    lines = [_wrap(caption, font, px) for caption in captions]
    line_h = _line_height(font)
    width = MARGIN + len(images) * (px + MARGIN)
    canvas = Image.new("RGB", (width, 2 * MARGIN + px + MARGIN // 2 + line_h * max(map(len, lines))), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (image, caption_lines) in enumerate(zip(images, lines)):
        x = MARGIN + i * (px + MARGIN)
        canvas.paste(_thumbnail(image, px), (x, MARGIN))
        for k, line in enumerate(caption_lines):
            draw.text((x, MARGIN + px + MARGIN // 2 + k * line_h), line, font=font, fill="black")
    return np.asarray(canvas)


def similarity_figure(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    similarity: ArrayLike,
    thumb_px: int = 64,
    caption_px: int = 240,
    title: str = "cosine similarity",
) -> np.ndarray:
    """The CLIP paper's zero-shot similarity figure: a row per caption (wrapped, at the left), a column per image
    (its thumbnail on top), every cell coloured by the cosine similarity and labelled with it, and a colour bar.

    ``similarity`` is ``[len(images), len(captions)]`` (image features times text features, as the loss
    multiplies them). Colours span its own minimum to maximum, so a model early in training still shows
    which pairs it prefers; the bar's labels give the range.
    """
    values = np.asarray(similarity, dtype=np.float64).T  # rows captions, columns images
    font, title_font = _font(TEXT_PX), _font(TEXT_PX + 2)
    line_h = _line_height(font)
    lines = [_wrap(caption, font, caption_px - MARGIN) for caption in captions]
    cell_w, cell_h = thumb_px + 4, max(thumb_px + 4, line_h * max(map(len, lines)) + MARGIN)
    left, top = MARGIN + caption_px, 2 * MARGIN + thumb_px  # the matrix's top-left corner
    bar_x = left + values.shape[1] * cell_w + MARGIN
    bar_h = values.shape[0] * cell_h
    label_w = round(font.getlength("-0.00"))
    canvas = Image.new("RGB", (bar_x + BAR_PX + label_w + 2 * MARGIN, top + bar_h + MARGIN), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN), title, font=title_font, fill="black")
    for j, image in enumerate(images):
        canvas.paste(_thumbnail(image, thumb_px), (left + j * cell_w + 2, MARGIN))

    low, high = values.min(), values.max()
    colours = _scale((values - low) / max(high - low, 1e-6))
    for i, caption_lines in enumerate(lines):
        y = top + i * cell_h
        first = y + (cell_h - line_h * len(caption_lines)) / 2
        for k, line in enumerate(caption_lines):
            draw.text((left - MARGIN, first + k * line_h), line, font=font, fill="black", anchor="ra")
        for j, value in enumerate(values[i]):
            x, colour = left + j * cell_w, colours[i, j]
            draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=tuple(colour.tolist()), outline="white")
            draw.text((x + cell_w / 2, y + cell_h / 2), f"{value:.2f}", font=font, fill=_ink(colour), anchor="mm")

    gradient = _scale(np.linspace(1, 0, bar_h))[:, None].repeat(BAR_PX, axis=1)
    canvas.paste(Image.fromarray(gradient), (bar_x, top))
    for fraction, anchor in ((0, "la"), (0.5, "lm"), (1, "ld")):
        label = f"{high - fraction * (high - low):.2f}"
        draw.text((bar_x + BAR_PX + MARGIN // 2, top + fraction * bar_h), label, font=font, fill="black", anchor=anchor)
    return np.asarray(canvas)


def frame_strips(clips: Sequence[Sequence[np.ndarray]], captions: Sequence[str], px: int = 64) -> np.ndarray:
    """Clips as rows of their frames, ``px`` pixels a side and left to right in time, each clip's caption at the
    left of its row: what a video batch shows (motion reads along a row)."""
    font = _font(TEXT_PX)
    caption_w = 200
    lines = [_wrap(caption, font, caption_w - MARGIN) for caption in captions]
    line_h = _line_height(font)
    row_h = max(px, line_h * max(map(len, lines), default=1))
    frames = max(map(len, clips), default=0)
    width = MARGIN + caption_w + frames * (px + 2) + MARGIN
    canvas = Image.new("RGB", (width, MARGIN + len(clips) * (row_h + MARGIN)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (clip, caption_lines) in enumerate(zip(clips, lines)):
        y = MARGIN + row * (row_h + MARGIN)
        first = y + (row_h - line_h * len(caption_lines)) / 2
        for k, line in enumerate(caption_lines):
            draw.text((MARGIN, first + k * line_h), line, font=font, fill="black")
        for t, frame in enumerate(clip):
            canvas.paste(_thumbnail(frame, px), (MARGIN + caption_w + t * (px + 2), y + (row_h - px) // 2))
    return np.asarray(canvas)


def spectrogram_picture(decibels: Tensor, dynamic_range: float = 80.0) -> np.ndarray:
    """A spectrogram ``[frequencies, frames]`` in dB as a picture, low frequencies at the bottom, time to the right:
    the ``dynamic_range`` dB under its loudest bin on the similarity figure's colour scale, anything quieter in the
    scale's first colour."""
    values = decibels.detach().float().cpu().numpy()
    floor = values.max() - dynamic_range
    return _scale(np.clip((values - floor) / dynamic_range, 0, 1)[::-1])


def segmentation_overlay(
    image: np.ndarray,
    mask: ArrayLike,
    class_names: Sequence[str],
    ignore_index: int = IGNORE_INDEX,
    min_side: int = 256,
) -> np.ndarray:
    """Each class of ``mask`` (``[H, W]`` class indices) painted over its pixels by torchvision's
    ``draw_segmentation_masks``, with a legend of the classes present; ``ignore_index`` pixels stay unpainted."""
    return _regions(image, mask, class_names, min_side, ignore_index=ignore_index)


def segmentation_comparison(
    images: Sequence[np.ndarray],
    truths: Sequence[ArrayLike],
    predictions: Sequence[ArrayLike],
    class_names: Sequence[str],
    ignore_index: int = IGNORE_INDEX,
    min_side: int = 128,
) -> np.ndarray:
    """A row per image: its ground-truth mask (``[H, W]`` class indices) and its predicted one painted over it side
    by side, under the titles "ground truth" and "prediction", with one legend of the classes present.

    Each class keeps one colour in the whole picture: separate :func:`segmentation_overlay` pictures hand colours to
    the classes each one shows, so a class could change colour between its mask and its prediction.
    """
    truths, predictions = [torch.as_tensor(t) for t in truths], [torch.as_tensor(p) for p in predictions]
    present = sorted({k for labels in truths + predictions for k in labels.unique().tolist()} - {ignore_index})
    colour_of = dict(zip(present, palette(len(present))))
    rows = [
        [_paint(image, labels, colour_of, min_side) for labels in (truth, prediction)]
        for image, truth, prediction in zip(images, truths, predictions)
    ]
    grid = _titled_grid(rows, ("ground truth", "prediction"))
    return _with_legend(grid, [(class_names[k], colour_of[k]) for k in present])


def group_stages(images: Sequence[np.ndarray], stage_maps: Sequence[Tensor], min_side: int = 128) -> np.ndarray:
    """GroupViT's groups stage by stage: a row per image, the image and then each stage's groups in their colours
    with white borders, under the titles "image", "stage 1: G groups", .... ``stage_maps[s]`` is stage ``s``'s
    pixel-to-group map ``[B, G_s, h, w]`` (:meth:`~lit_clip.models.groupvit.Groups.maps`); each pixel is drawn
    in its most assigned group. Groups have no names, so no legend."""
    groups = [stage_map.argmax(dim=1).cpu() for stage_map in stage_maps]
    rows = []
    for i, image in enumerate(images):
        cells = [_enlarge(image, min_side)[0].permute(1, 2, 0).numpy()]
        cells += [_outlined(image, stage_groups[i], min_side)[0] for stage_groups in groups]
        rows.append(cells)
    titles = ["image", *(f"stage {s + 1}: {stage_map.shape[1]} groups" for s, stage_map in enumerate(stage_maps))]
    return _titled_grid(rows, titles)


def group_map(
    image: np.ndarray, assignment: ArrayLike, group_names: Sequence[str] | None = None, min_side: int = 256
) -> np.ndarray:
    """GroupViT's grouping: each group in its colour over the image, white lines where groups meet, and a legend
    (``group_names``, else "group k"). ``assignment`` is each pixel's group, ``[h, w]`` long; a coarser grid (one
    group per patch) is stretched to the image by nearest neighbour."""
    groups = torch.as_tensor(assignment)
    names = group_names or [f"group {k}" for k in range(int(groups.max()) + 1)]
    return _regions(image, groups, names, min_side, outline=True)


def boxes_with_names(
    image: np.ndarray,
    boxes_xyxy: ArrayLike,
    labels: ArrayLike,
    class_names: Sequence[str],
    scores: ArrayLike | None = None,
    min_side: int = 256,
) -> np.ndarray:
    """Boxes (``[N, 4]`` x1, y1, x2, y2 in pixels of ``image``) in their class's colour, each named "name 0.87"
    (the score, when given) by torchvision's ``draw_bounding_boxes``."""
    labels = torch.as_tensor(labels).tolist()
    present = sorted(set(labels))
    colour_of = dict(zip(present, palette(len(present))))
    texts = _box_texts(labels, class_names, scores)
    return _named_boxes(image, boxes_xyxy, texts, [colour_of[k] for k in labels], min_side)


def detection_comparison(
    images: Sequence[np.ndarray],
    truths: Sequence[dict],
    predictions: Sequence[dict],
    class_names: Sequence[str],
    novel_names: Collection[str],
    score_threshold: float = 0.3,
    max_boxes: int = 10,
    min_side: int = 256,
) -> np.ndarray:
    """A row per image: its ground-truth boxes with their names, and its predicted boxes scored above
    ``score_threshold`` (the ``max_boxes`` best) named "name 0.87", under the titles "ground truth" and
    "prediction, score > 0.3". Boxes of novel classes (``novel_names``) are in one colour, of base ones in another,
    with a legend of the two: an open-vocabulary detector's pictures show at a glance what it finds of each.

    ``truths`` and ``predictions`` hold per image ``"boxes"`` ``[N, 4]`` (x1, y1, x2, y2 in pixels of the image) and
    ``"labels"`` ``[N]`` (indices into ``class_names``), predictions ``"scores"`` ``[N]`` too. The images are of one
    size (a padded batch's), as the grid's cells.
    """

    def cell(image: np.ndarray, boxes: ArrayLike, labels: ArrayLike, scores: ArrayLike | None = None) -> np.ndarray:
        labels = torch.as_tensor(labels).tolist()
        colours = [NOVEL_COLOUR if class_names[k] in novel_names else BASE_COLOUR for k in labels]
        return _named_boxes(image, boxes, _box_texts(labels, class_names, scores), colours, min_side)

    rows = []
    for image, truth, prediction in zip(images, truths, predictions):
        scores = torch.as_tensor(prediction["scores"])
        best = scores.argsort(descending=True)[:max_boxes]
        best = best[scores[best] > score_threshold].flip(0)  # the best drawn last: its tag on top
        found = torch.as_tensor(prediction["boxes"])[best], torch.as_tensor(prediction["labels"])[best], scores[best]
        rows.append([cell(image, truth["boxes"], truth["labels"]), cell(image, *found)])
    grid = _titled_grid(rows, ("ground truth", f"prediction, score > {score_threshold:g}"))
    return _with_legend(grid, [("base", BASE_COLOUR), ("novel", NOVEL_COLOUR)])


def grounding_picture(
    image: np.ndarray,
    boxes_xyxy: ArrayLike,
    phrases: Sequence[str],
    scores: ArrayLike,
    token_maps: ArrayLike,
    tokens: Sequence[str],
    min_side: int = 192,
) -> np.ndarray:
    """A grounding model's view of one image, in a row under titles: the image with the best box of each phrase named
    "phrase 0.87", then for each token its alignment map (``token_maps`` ``[T, h, w]``, scores in [0, 1] over any
    grid, stretched to the image) as a red glow over the darkened image: which words light up where."""
    texts = [f"{phrase} {score:.2f}" for phrase, score in zip(phrases, torch.as_tensor(scores).tolist())]
    cells = [_named_boxes(image, boxes_xyxy, texts, palette(len(texts)), min_side)]
    for token_map in torch.as_tensor(token_maps, dtype=torch.float32):
        picture, _ = _enlarge(image, min_side)
        glow = F.interpolate(token_map[None, None], size=picture.shape[1:], mode="bilinear")[0, 0].clamp(0, 1)
        shaded = picture.float() * 0.35
        shaded[0] = shaded[0] + 255 * 0.65 * glow
        cells.append(shaded.clamp(0, 255).byte().permute(1, 2, 0).numpy())
    return _titled_grid([cells], ["phrases", *(f'"{token}"' for token in tokens)])


def _box_texts(labels: Sequence[int], class_names: Sequence[str], scores: ArrayLike | None) -> list[str]:
    """Each box's name, "name 0.87" with its score when given."""
    texts = [class_names[k] for k in labels]
    if scores is None:
        return texts
    return [f"{text} {score:.2f}" for text, score in zip(texts, torch.as_tensor(scores).tolist())]


def _named_boxes(
    image: np.ndarray, boxes_xyxy: ArrayLike, texts: Sequence[str], colours: Sequence[RGB], min_side: int
) -> np.ndarray:
    """Boxes (``[N, 4]`` x1, y1, x2, y2 in pixels of ``image``) outlined over the enlarged image by torchvision's
    ``draw_bounding_boxes``, each in its colour with its text on a tag of that colour just above it."""
    picture, factor = _enlarge(image, min_side)
    boxes = torch.as_tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4) * factor
    if len(boxes):  # (torchvision warns of an empty box list)
        picture = draw_bounding_boxes(picture, boxes, colors=list(colours), width=2)
    canvas = Image.fromarray(picture.permute(1, 2, 0).numpy())
    # The texts on a tag of the box's colour just above the box, in the font of every picture here: torchvision
    # writes them inside the box in a fixed 10-pixel font of the box's colour, unreadable on a similar object.
    draw, font = ImageDraw.Draw(canvas), _font(TEXT_PX)
    for (x1, y1, _, _), text, colour in zip(boxes.tolist(), texts, colours):
        corner = (min(x1, canvas.width - font.getlength(text) - 3), max(y1, _line_height(font)))
        left, top, right, bottom = draw.textbbox(corner, text, font=font, anchor="ld")
        draw.rectangle((left - 1, top - 2, right + 2, bottom + 1), fill=colour)
        draw.text(corner, text, font=font, fill=_ink(colour), anchor="ld")
    return np.asarray(canvas)


def _regions(
    image: np.ndarray,
    labels: ArrayLike,
    names: Sequence[str],
    min_side: int,
    ignore_index: int | None = None,
    outline: bool = False,
) -> np.ndarray:
    """A label map's regions painted over the enlarged image (optionally with their borders in white), with a
    legend of the labels present: the part segmentation masks and GroupViT's groups share."""
    painted, present = _outlined(image, torch.as_tensor(labels), min_side, ignore_index, outline)
    return _with_legend(painted, list(zip([names[k] for k in present], palette(len(present)))))


def _outlined(
    image: np.ndarray, labels: Tensor, min_side: int, ignore_index: int | None = None, outline: bool = True
) -> tuple[np.ndarray, list[int]]:
    """The labels present (but ``ignore_index``) painted over the enlarged image in :func:`palette`'s colours, in
    their order, with their borders in white if ``outline``; and those labels."""
    picture, _ = _enlarge(image, min_side)
    labels = F.interpolate(labels[None, None].float(), size=picture.shape[1:], mode="nearest")[0, 0].long()
    present = [k for k in labels.unique().tolist() if k != ignore_index]
    masks = labels[None] == torch.tensor(present, dtype=torch.long).view(-1, 1, 1)
    painted = draw_segmentation_masks(picture, masks, alpha=0.5, colors=palette(len(present)))
    if outline:
        border = torch.zeros_like(labels, dtype=torch.bool)
        border[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        border[1:] |= labels[1:] != labels[:-1]
        painted[:, border] = 255
    return painted.permute(1, 2, 0).numpy(), present


def _titled_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str]) -> np.ndarray:
    """Cells of one size in rows and columns on white, a title above each column."""
    font = _font(TEXT_PX)
    cell_h, cell_w = rows[0][0].shape[:2]
    top = MARGIN + _line_height(font)
    columns = len(titles)
    canvas = Image.new("RGB", (MARGIN + columns * (cell_w + MARGIN), top + len(rows) * (cell_h + MARGIN)), "white")
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(titles):
        x = MARGIN + column * (cell_w + MARGIN)
        draw.text((x + cell_w / 2, MARGIN), title, font=font, fill="black", anchor="ma")
        for row, cells in enumerate(rows):
            canvas.paste(Image.fromarray(cells[column]), (x, top + row * (cell_h + MARGIN)))
    return np.asarray(canvas)


def _paint(image: np.ndarray, labels: Tensor, colour_of: dict[int, RGB], min_side: int) -> np.ndarray:
    """The labels of ``colour_of`` painted in their colours over the enlarged image; other labels stay unpainted."""
    picture, _ = _enlarge(image, min_side)
    labels = F.interpolate(labels[None, None].float(), size=picture.shape[1:], mode="nearest")[0, 0].long()
    shown = [k for k in labels.unique().tolist() if k in colour_of]
    masks = labels[None] == torch.tensor(shown, dtype=torch.long).view(-1, 1, 1)
    painted = draw_segmentation_masks(picture, masks, alpha=0.5, colors=[colour_of[k] for k in shown])
    return painted.permute(1, 2, 0).numpy()


def _with_legend(picture: np.ndarray, entries: Sequence[tuple[str, RGB]]) -> np.ndarray:
    """``picture`` with a legend at its right: a colour swatch and a name per entry."""
    font = _font(TEXT_PX)
    row_h = _line_height(font) + 4
    text_w = max((font.getlength(name) for name, _ in entries), default=0)
    height, width = picture.shape[:2]
    canvas = Image.new(
        "RGB", (width + 2 * MARGIN + row_h + round(text_w), max(height, 2 * MARGIN + len(entries) * row_h)), "white"
    )
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (name, colour) in enumerate(entries):
        x, y = width + MARGIN, MARGIN + i * row_h
        draw.rectangle((x, y + 2, x + row_h - 6, y + row_h - 4), fill=colour, outline="black")
        draw.text((x + row_h, y + row_h / 2 - 1), name, font=font, fill="black", anchor="lm")
    return np.asarray(canvas)


def _enlarge(image: np.ndarray, min_side: int) -> tuple[Tensor, int]:
    """``image`` as a uint8 ``[3, H, W]`` tensor enlarged by a whole factor (each pixel a square block) to at least
    ``min_side`` pixels a side, so that labels and lines drawn on a small image stay readable; and the factor."""
    factor = max(1, -(-min_side // min(image.shape[:2])))
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return pixels.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2), factor


def _thumbnail(image: np.ndarray, px: int) -> Image.Image:
    """``image`` at ``px`` x ``px``: enlarged in crisp blocks, shrunk smoothly."""
    resample = Image.Resampling.NEAREST if max(image.shape[:2]) <= px else Image.Resampling.LANCZOS
    return Image.fromarray(image).resize((px, px), resample)


def _ink(colour: ArrayLike) -> str:
    """Black for text on a light colour, white on a dark one."""
    return "black" if np.asarray(colour) @ _LUMA > 128 else "white"


def _scale(t: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as uint8 RGB colours of the similarity scale, shape ``t.shape + (3,)``."""
    stops = np.linspace(0, 1, len(_SCALE))
    return np.stack([np.interp(t, stops, _SCALE[:, c]) for c in range(3)], axis=-1).round().astype(np.uint8)


@cache
def _font(size: int) -> Font:
    """Pillow's built-in font at ``size`` pixels; before Pillow 10.1, which cannot scale it, its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _line_height(font: Font) -> int:
    return font.getbbox("Ag")[3] + 3


def _wrap(text: str, font: Font, width: float) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide (a longer word gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


# --- depth and point clouds ----------------------------------------------------------------------
NO_DEPTH_COLOUR: RGB = (128, 128, 128)  # pixels without a measurement: a grey, outside both scales below
# Absolute depth errors: black through red and orange to white ("hot"), a scale apart from the depths' viridis.
_ERROR_SCALE = np.array([(0, 0, 0), (170, 0, 0), (255, 110, 0), (255, 230, 90), (255, 255, 255)], dtype=np.float64)
_DEPTH_SCALE = _SCALE[::-1]  # depths: the similarity scale reversed, near (0) bright yellow to far (1) dark blue
RIGHT_COLOUR: RGB = (0, 140, 0)  # a correct prediction's name
WRONG_COLOUR: RGB = (200, 0, 0)  # a wrong one's


def depth_colours(depth: ArrayLike, low: float, high: float, valid: ArrayLike | None = None) -> np.ndarray:
    """A depth map ``[H, W]`` in metres as a picture ``[H, W, 3]``: the similarity figure's scale (viridis), near
    (``low`` and closer) bright yellow, far (``high`` and beyond) dark blue; pixels not ``valid`` (by default those
    without a measurement, depth <= 0) in :data:`NO_DEPTH_COLOUR`."""
    depth = torch.as_tensor(depth, dtype=torch.float64).numpy()
    valid = depth > 0 if valid is None else torch.as_tensor(valid, dtype=torch.bool).numpy()
    colours = _colour_scale((depth - low) / max(high - low, 1e-6), _DEPTH_SCALE)
    colours[~valid] = NO_DEPTH_COLOUR
    return colours


def depth_comparison(
    images: Sequence[np.ndarray],
    truths: Sequence[ArrayLike],
    predictions: Sequence[ArrayLike],
    evaluation_masks: Sequence[ArrayLike] | None = None,
    px: int = 160,
) -> np.ndarray:
    """A row per image, under the titles "image", "prediction", "ground truth", "absolute error": the image, its
    predicted and true depth maps (``[H, W]`` metres, 0 where nothing was measured) on one colour scale and range
    (from the nearest to the farthest depth, measured or predicted, in the whole picture), and ``|prediction -
    truth|`` where the truth was measured and is scored (inside ``evaluation_masks``, when given), on its own scale
    from 0 to the largest error; pixels without either in grey. Under the depth and error columns, their scales
    with the ranges in metres. Every cell is ``px`` high at the depth maps' aspect ratio (the image is stretched to
    it, should it be another size)."""
    truths = [torch.as_tensor(t, dtype=torch.float32) for t in truths]
    predictions = [torch.as_tensor(p, dtype=torch.float32) for p in predictions]
    masks = [t > 0 for t in truths]
    if evaluation_masks is not None:
        masks = [m & torch.as_tensor(e, dtype=torch.bool) for m, e in zip(masks, evaluation_masks)]
    errors = [(p - t).abs() for p, t in zip(predictions, truths)]
    depths = torch.cat([*(t[t > 0] for t in truths), *(p.flatten() for p in predictions)])
    low, high = (depths.min().item(), depths.max().item()) if len(depths) else (0.0, 1.0)
    worst = max((e[m].max().item() for e, m in zip(errors, masks) if m.any()), default=0.0)

    size = (round(px * truths[0].shape[1] / truths[0].shape[0]), px)
    rows = []
    for image, truth, prediction, error, mask in zip(images, truths, predictions, errors, masks):
        error_colours = _colour_scale(error.double().numpy() / max(worst, 1e-6), _ERROR_SCALE)
        error_colours[~mask.numpy()] = NO_DEPTH_COLOUR
        cells = [_resized(image, size)]
        cells += [_resized(c, size) for c in (depth_colours(prediction, low, high, torch.ones_like(mask)),
                                              depth_colours(truth, low, high), error_colours)]  # fmt: skip
        rows.append(cells)
    grid = _titled_grid(rows, ("image", "prediction", "ground truth", "absolute error"))

    # The scales: depth's under the prediction and truth columns (near at the left), the error's under its column.
    cell_w = size[0]
    depth_bar = _scale_bar(2 * cell_w + MARGIN, _DEPTH_SCALE, low, high, "depth, m (near to far)")
    error_bar = _scale_bar(cell_w, _ERROR_SCALE, 0.0, worst, "absolute error, m")
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + depth_bar.shape[0] + MARGIN), "white")
    canvas.paste(Image.fromarray(grid), (0, 0))
    canvas.paste(Image.fromarray(depth_bar), (MARGIN + cell_w + MARGIN, grid.shape[0]))
    canvas.paste(Image.fromarray(error_bar), (MARGIN + 3 * (cell_w + MARGIN), grid.shape[0]))
    return np.asarray(canvas)


def point_cloud_views(
    views: ArrayLike, true_names: Sequence[str], predicted_names: Sequence[str], px: int = 96
) -> np.ndarray:
    """A row per point cloud: its projected views (``views`` ``[B, V, H, W]``, values in [0, 1], drawn in grey as
    the CLIP sees them) left to right, ``px`` pixels a side, under the titles "view 1", "view 2", ...; at the left
    of the row its true class and the predicted one, in green when right and red when wrong."""
    views = torch.as_tensor(views, dtype=torch.float32)
    font = _font(TEXT_PX)
    line_h = _line_height(font)
    caption_w = 160
    captions = [
        (_wrap(f"true: {true}", font, caption_w - MARGIN), _wrap(f"predicted: {predicted}", font, caption_w - MARGIN))
        for true, predicted in zip(true_names, predicted_names)
    ]
    row_h = max(px, line_h * max((len(a) + len(b) for a, b in captions), default=1))
    top = MARGIN + line_h
    count = views.shape[1]
    canvas = Image.new(
        "RGB", (MARGIN + caption_w + count * (px + MARGIN), top + len(captions) * (row_h + MARGIN)), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for v in range(count):
        draw.text((MARGIN + caption_w + v * (px + MARGIN) + px / 2, MARGIN), f"view {v + 1}", font=font,
                  fill="black", anchor="ma")  # fmt: skip
    grey = (views.clamp(0, 1) * 255).round().to(torch.uint8)[..., None].expand(*views.shape, 3).numpy()
    for row, ((true_lines, predicted_lines), true, predicted) in enumerate(zip(captions, true_names, predicted_names)):
        y = top + row * (row_h + MARGIN)
        lines = [(line, "black") for line in true_lines]
        lines += [(line, RIGHT_COLOUR if predicted == true else WRONG_COLOUR) for line in predicted_lines]
        first = y + (row_h - line_h * len(lines)) / 2
        for k, (line, colour) in enumerate(lines):
            draw.text((MARGIN, first + k * line_h), line, font=font, fill=colour)
        for v in range(count):
            canvas.paste(_thumbnail(grey[row, v], px), (MARGIN + caption_w + v * (px + MARGIN), y + (row_h - px) // 2))
    return np.asarray(canvas)


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` at ``size`` (width, height): enlarged in crisp blocks, shrunk smoothly."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    enlarging = image.shape[1] <= size[0] and image.shape[0] <= size[1]
    resample = Image.Resampling.NEAREST if enlarging else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, resample))


def _colour_scale(t: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Values ``t`` (clipped to [0, 1]) as uint8 RGB colours ``t.shape + (3,)`` of the scale through the colours
    ``stops`` ``[n, 3]``, evenly spaced."""
    positions = np.linspace(0, 1, len(stops))
    t = np.clip(t, 0, 1)
    return np.stack([np.interp(t, positions, stops[:, c]) for c in range(3)], axis=-1).round().astype(np.uint8)


def _scale_bar(width: int, stops: np.ndarray, low: float, high: float, label: str) -> np.ndarray:
    """A horizontal colour scale (:func:`_colour_scale` of ``stops``, left to right) ``width`` pixels wide:
    ``label`` above it, ``low`` under its left end, ``high`` under its right end and the middle value between."""
    font = _font(TEXT_PX)
    line_h = _line_height(font)
    canvas = Image.new("RGB", (width, 2 * line_h + BAR_PX + MARGIN // 2), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((0, 0), label, font=font, fill="black")
    bar = _colour_scale(np.linspace(0, 1, width), stops)[None].repeat(BAR_PX, axis=0)
    canvas.paste(Image.fromarray(bar), (0, line_h))
    for fraction, anchor in ((0, "la"), (0.5, "ma"), (1, "ra")):
        value = low + fraction * (high - low)
        draw.text((fraction * (width - 1), line_h + BAR_PX + 2), f"{value:.2f}", font=font, fill="black", anchor=anchor)
    return np.asarray(canvas)
