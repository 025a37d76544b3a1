"""Preprocessing on torchvision's transforms.v2: masks, boxes and video frames move with the image, and the
multi-view hook gives a training sample several views by name. (Pixel equality with open_clip's
preprocessing is tested in test_pair_data.py and test_classification_data.py.)"""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from lit_clip.datamodules import ShapesWorldCaptions
from lit_clip.transforms import MultiView, clip_eval_transform, clip_train_transform, image_entries


def marked_scene():
    """A 60 x 80 grey image with a white block at rows 10-29, columns 40-69, its mask and its box."""
    pixels = np.full((60, 80, 3), 64, dtype=np.uint8)
    pixels[10:30, 40:70] = 255
    mask = torch.zeros(60, 80, dtype=torch.long)
    mask[10:30, 40:70] = 3
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[40.0, 10.0, 70.0, 30.0]]), format="XYXY", canvas_size=(60, 80))
    return Image.fromarray(pixels), tv_tensors.Mask(mask), boxes


@pytest.mark.parametrize("transform", [clip_eval_transform(32), clip_train_transform(32, scale=(0.6, 1.0), flip=True)])
def test_the_mask_and_the_boxes_follow_the_image(transform):
    torch.manual_seed(0)
    for _ in range(5):  # random crops and flips
        image, mask, boxes = marked_scene()
        out = transform({"image": image, "mask": mask, "boxes": boxes, "label": 7})
        assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.float32
        assert out["mask"].shape == (32, 32) and out["mask"].dtype == torch.long and out["label"] == 7
        assert set(out["mask"].unique().tolist()) <= {0, 3}  # nearest-neighbour: no blended labels
        assert type(out["image"]) is torch.Tensor and type(out["mask"]) is torch.Tensor  # plain tensors for collate
        bright = out["image"].mean(0) > 1.0  # the white block, normalised
        labelled = out["mask"] == 3
        if labelled.sum() > 4:
            assert (bright & labelled).sum() >= 0.8 * labelled.sum()  # the same pixels
            rows, cols = labelled.nonzero(as_tuple=True)
            x1, y1, x2, y2 = out["boxes"][0].tolist()
            assert x1 - 1.5 <= cols.min() and cols.max() <= x2 + 0.5 and y1 - 1.5 <= rows.min() and rows.max() <= y2 + 0.5


def test_video_frames_share_one_random_crop():
    torch.manual_seed(0)
    frame = torch.from_numpy(np.asarray(marked_scene()[0])).permute(2, 0, 1)
    video = tv_tensors.Video(torch.stack([frame, frame, frame]))  # [T, 3, H, W] uint8
    out = clip_train_transform(32, scale=(0.3, 1.0), flip=True)(video)
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


def test_multi_view_gives_each_view_by_name_with_its_own_draw():
    views = MultiView(image=clip_eval_transform(32), ssl_view_1=clip_train_transform(32, scale=(0.08, 1.0)),
                      ssl_view_2=clip_train_transform(32, scale=(0.08, 1.0)))  # fmt: skip
    entries = image_entries(views, marked_scene()[0])
    assert set(entries) == {"image", "ssl_view_1", "ssl_view_2"}
    assert not torch.equal(entries["ssl_view_1"], entries["ssl_view_2"])
    assert set(image_entries(clip_eval_transform(32), marked_scene()[0])) == {"image"}
    with pytest.raises(ValueError, match="'image' view"):
        MultiView(view_1=clip_eval_transform(32))


def test_a_data_module_trains_on_every_view_of_its_transform():
    class TwoViews(ShapesWorldCaptions):
        def train_transform(self):
            plain = super().train_transform()
            return MultiView(image=plain, flipped=lambda image: plain(image.transpose(Image.FLIP_LEFT_RIGHT)))

    data = TwoViews(image_size=32, batch_size=4, train_samples=8, val_samples=4, context_length=16)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == batch["flipped"].shape == (4, 3, 32, 32)
    torch.testing.assert_close(batch["flipped"], batch["image"].flip(-1))
