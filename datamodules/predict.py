"""What ``lit-clip predict`` reads: the user's own images and texts, or, without them, the test split.

Every data module that a method predicts with takes ``predict_images`` (a folder, searched
recursively; a text file listing image paths, relative to its folder; or one image file) and the
caption modules also ``predict_texts`` (a text file, one text per line). Images are prepared as
for evaluation (resize of the short side, centre crop, CLIP's mean and std). Batches are
``{"image", "path"}`` and ``{"text", "caption"}``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from lit_clip.datamodules.images import IMAGE_EXTENSIONS, load_rgb
from torch.utils.data import DataLoader, Dataset

from lit_clip.tokenizer import tokenize
from lit_clip.transforms import clip_eval_transform, to_normalized_tensor


def list_images(source: str | Path) -> list[Path]:
    """The image files ``source`` names: a folder's (recursively, sorted), a list file's, or the file itself."""
    source = Path(source)
    if source.is_dir():
        images = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        if not images:
            raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {source}")
        return images
    if not source.is_file():
        raise FileNotFoundError(f"predict_images: {source} is neither a folder, an image file nor a list of image paths")
    if source.suffix.lower() in IMAGE_EXTENSIONS:
        return [source]
    images = [source.parent / line.strip() for line in _text_lines(source)]
    if not images:
        raise ValueError(f"{source} lists no image path; expected one image path per line")
    return images


def read_texts(path: str | Path) -> list[str]:
    """The non-blank lines of a text file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predict_texts: {path} not found; expected a text file with one text per line")
    texts = [line.strip() for line in _text_lines(path)]
    if not texts:
        raise ValueError(f"{path} holds no text; expected one text per line")
    return texts


def _text_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error})") from error


class ImagePathsDataset(Dataset):
    """``{"image", "path"}`` for each path; an unreadable file stops the run with its name."""

    def __init__(self, paths: list[Path], image_size: int | Sequence[int]):
        size = image_size if isinstance(image_size, int) else tuple(image_size)  # [h, w]: resized to exactly that
        self.paths, self.transform = paths, clip_eval_transform(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.transform(load_rgb(self.paths[index])), "path": str(self.paths[index])}


class TextsDataset(Dataset):
    """``{"text", "caption"}`` for each text."""

    def __init__(self, texts: list[str], context_length: int):
        self.texts, self.context_length = texts, context_length

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict:
        return {"text": tokenize(self.texts[index], context_length=self.context_length)[0], "caption": self.texts[index]}


class DetectionImagesDataset(Dataset):
    """``{"image", "path", "index"}`` for each path, the image normalised at its own size (as detection evaluates):
    a detector resizes what it needs and gives boxes in the file's pixels."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return {"image": to_normalized_tensor(load_rgb(self.paths[index])), "path": str(self.paths[index]),
                "index": index}  # fmt: skip


def detection_images_collate(samples: list[dict]) -> dict:
    """Images of different sizes padded into one batch, with ``image_size`` (height, width) before padding, as a
    :class:`~lit_clip.batches.DetectionBatch` without targets; and their ``path``."""
    sizes = torch.tensor([sample["image"].shape[-2:] for sample in samples], dtype=torch.long)
    images = torch.zeros(len(samples), 3, *sizes.max(dim=0).values.tolist())
    for image, sample in zip(images, samples):
        image[:, : sample["image"].shape[-2], : sample["image"].shape[-1]] = sample["image"]
    return {"image": images, "image_size": sizes, "path": [sample["path"] for sample in samples],
            "index": torch.tensor([sample["index"] for sample in samples])}  # fmt: skip


def detection_prediction_loader(hparams, default) -> DataLoader:
    """The loader of ``predict_images`` for a detector (images at their own size), or ``default()``."""
    if not hparams.get("predict_images"):
        return default()
    dataset = DetectionImagesDataset(list_images(hparams.predict_images))
    batch_size = hparams.get("eval_batch_size") or hparams.batch_size
    return DataLoader(dataset, batch_size=batch_size, num_workers=hparams.num_workers,
                      collate_fn=detection_images_collate)  # fmt: skip


def prediction_loaders(hparams, default) -> DataLoader | list[DataLoader]:
    """The loaders of ``predict_images`` and ``predict_texts`` given in ``hparams``, or ``default()``."""
    loaders = []
    if hparams.get("predict_images"):
        dataset = ImagePathsDataset(list_images(hparams.predict_images), hparams.image_size)
        loaders.append(_loader(dataset, hparams))
    if hparams.get("predict_texts"):
        loaders.append(_loader(TextsDataset(read_texts(hparams.predict_texts), hparams.context_length), hparams))
    if not loaders:
        return default()
    return loaders[0] if len(loaders) == 1 else loaders


def _loader(dataset: Dataset, hparams) -> DataLoader:
    batch_size = hparams.get("eval_batch_size") or hparams.batch_size
    return DataLoader(dataset, batch_size=batch_size, num_workers=hparams.num_workers)



