"""The real 3D and depth data sets' layouts: writers (export_3d) and readers (point_clouds, depth) round trip, the
files' details (transposition, 1-based splits, PNG scales, None lines), the benchmarks' crops, the few-shot draw,
validation carved from training only, and the clear errors."""
from __future__ import annotations

import logging
from collections import Counter

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from lit_clip.datamodules.depth import (
    KITTIDepth,
    NYUDepthV2,
    garg_mask,
    kb_crop_box,
    nyu_eigen_mask,
)
from lit_clip.datamodules.export_3d import (
    write_depth_list,
    write_kitti_eigen,
    write_modelnet_hdf5,
    write_modelnet_resampled,
    write_nyu_mat,
    write_nyu_splits,
    write_scanobjectnn,
)
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.point_clouds import (
    MODELNET10_CLASSES,
    SCANOBJECTNN_CLASSES,
    ModelNet10,
    ModelNet40,
    ScanObjectNN,
)
from PIL import Image

from lit_clip.transforms import denormalize

NAMES = ["airplane", "night_stand", "bed", "car"]


def clouds(count: int, points: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, points, 3)).astype(np.float32)


def modelnet(tmp_path, train: int = 12, test: int = 8, points: int = 16, **kwargs) -> ModelNet40:
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    write_modelnet_hdf5(folder, clouds(train, points), np.arange(train) % 4, NAMES, "train", per_file=5)
    write_modelnet_hdf5(folder, clouds(test, points, seed=1), np.arange(test) % 4, NAMES, "test")
    options = dict(num_points=8, batch_size=2, num_workers=0) | kwargs
    return ModelNet40(str(tmp_path), **options)


def first_batch(loader) -> dict:
    return next(iter(loader))


# -- point clouds -------------------------------------------------------------------------------


def test_modelnet_hdf5_round_trip_keeps_the_first_points_in_file_order(tmp_path):
    data = modelnet(tmp_path, val_fraction=0.25)
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    # The original lists name the files by their path inside PointNet's repository; the loader looks them up by name.
    assert (folder / "train_files.txt").read_text().splitlines() == [
        f"data/modelnet40_ply_hdf5_2048/ply_data_train{k}.h5" for k in range(3)
    ]
    with h5py.File(folder / "ply_data_train0.h5") as file:
        assert file["data"].shape == (5, 16, 3) and file["label"].shape == (5, 1) and file["label"].dtype == np.uint8
    assert data.classnames == ["airplane", "night stand", "bed", "car"]
    assert data.templates == ["point cloud depth map of a {}."]
    batch = first_batch(data.test_dataloader())
    assert batch["points"].shape == (2, 8, 3) and batch["points"].dtype == torch.float32
    np.testing.assert_array_equal(batch["points"].numpy(), clouds(8, seed=1)[:2, :8])  # not re-normalised (hdf5)
    assert batch["label"].tolist() == [0, 1] and batch["index"].tolist() == [0, 1]
    every = torch.cat([b["label"] for b in data.test_dataloader()])
    assert every.tolist() == (np.arange(8) % 4).tolist()


def test_modelnet_resampled_round_trip_normalises_and_numbers_test_ids_after_training_ids(tmp_path):
    folder = tmp_path / "modelnet40_normal_resampled"
    normals = np.ones((8, 16, 3), np.float32)
    write_modelnet_resampled(folder, clouds(8) * 3 + 5, np.arange(8) % 4, NAMES, "train", normals=normals)
    files = write_modelnet_resampled(folder, clouds(4, seed=1) * 3 + 5, [0, 1, 2, 3], NAMES, "test")
    assert (folder / "modelnet40_test.txt").read_text().split() == [
        "airplane_0003", "night_stand_0003", "bed_0003", "car_0003"
    ]  # fmt: skip
    assert files[1] == folder / "night_stand" / "night_stand_0003.txt"
    row = (folder / "airplane" / "airplane_0001.txt").read_text().splitlines()[0].split(",")
    assert len(row) == 6 and row[3:] == ["1.000000"] * 3
    data = ModelNet40(str(tmp_path), layout="resampled", num_points=10, batch_size=4, num_workers=0)
    batch = first_batch(data.test_dataloader())
    assert batch["label"].tolist() == [0, 1, 2, 3]
    points = batch["points"]
    assert torch.allclose(points.mean(dim=1), torch.zeros(4, 3), atol=1e-5)
    assert torch.allclose(points.norm(dim=-1).amax(dim=1), torch.ones(4), atol=1e-5)
    raw = ModelNet40(str(tmp_path), layout="resampled", num_points=10, normalize=False, batch_size=4, num_workers=0)
    expected = np.round(clouds(4, seed=1)[:, :10] * 3 + 5, 6)
    np.testing.assert_allclose(first_batch(raw.test_dataloader())["points"].numpy(), expected, atol=1e-5)


def test_modelnet10_in_hdf5_is_modelnet40s_ten_classes_relabelled(tmp_path):
    names = ["airplane", *MODELNET10_CLASSES[::-1], "car"]  # the ten, in another order, among others
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    labels = np.arange(24) % 12
    write_modelnet_hdf5(folder, clouds(24), labels, names, "train")
    write_modelnet_hdf5(folder, clouds(12, seed=1), np.arange(12), names, "test")
    data = ModelNet10(str(tmp_path), num_points=4, batch_size=12, num_workers=0)
    assert data.classnames == [name.replace("_", " ") for name in MODELNET10_CLASSES]
    batch = first_batch(data.test_dataloader())
    # Test cloud k has ModelNet40 label k: names[k] = MODELNET10_CLASSES[10 - k] for k = 1..10.
    assert batch["label"].tolist() == [9 - k for k in range(10)]
    np.testing.assert_array_equal(batch["points"].numpy(), clouds(12, seed=1)[1:11, :4])
    assert len(data.source("train")) == 20


def test_modelnet10_resampled_reads_its_own_lists(tmp_path):
    folder = tmp_path / "modelnet40_normal_resampled"
    write_modelnet_resampled(folder, clouds(4), [0, 1, 0, 1], ["bed", "sofa"], "train", name="modelnet10")
    write_modelnet_resampled(folder, clouds(2), [1, 0], ["bed", "sofa"], "test", name="modelnet10")
    data = ModelNet10(str(folder), layout="resampled", num_points=4, batch_size=2, num_workers=0, val_fraction=0)
    assert data.classnames == ["bed", "sofa"]
    assert first_batch(data.test_dataloader())["label"].tolist() == [1, 0]


@pytest.mark.parametrize(
    "variant, file",
    [
        ("OBJ_ONLY", "main_split_nobg/test_objectdataset.h5"),
        ("OBJ_BG", "main_split/test_objectdataset.h5"),
        ("PB_T50_RS", "main_split/test_objectdataset_augmentedrot_scale75.h5"),
    ],
)
def test_scanobjectnn_variants_are_their_files_and_normalised(tmp_path, variant, file):
    root = tmp_path / "h5_files"
    write_scanobjectnn(root, variant, "train", clouds(30) * 4, np.arange(30) % 15)
    assert write_scanobjectnn(root, variant, "test", clouds(15, seed=1) * 4, np.arange(15)) == root / file
    with h5py.File(root / file) as h5:
        assert h5["label"].shape == (15,)
    data = ScanObjectNN(str(tmp_path), variant=variant, num_points=16, batch_size=15, num_workers=0)
    assert data.classnames == list(SCANOBJECTNN_CLASSES) and len(data.classnames) == 15
    assert data.classnames[:3] == ["bag", "bin", "box"] and data.classnames[-1] == "toilet"
    batch = first_batch(data.test_dataloader())
    assert batch["label"].tolist() == list(range(15))
    assert torch.allclose(batch["points"].norm(dim=-1).amax(dim=1), torch.ones(15), atol=1e-5)


def test_validation_comes_from_training_only_and_is_the_same_for_every_shot_count(tmp_path):
    full = modelnet(tmp_path, train=40, val_fraction=0.25)
    val, train = full.indices("val"), full.indices("train")
    assert len(np.intersect1d(val, train)) == 0 and len(val) + len(train) == 40
    assert Counter(full.source("train").labels[val].tolist()) == {0: 2, 1: 2, 2: 2, 3: 2}  # 25 % of each 10
    assert full.dataset("val").source is full.source("train")  # never the test clouds
    assert full.dataset("test").source is full.source("test")
    for shots in (1, 3):
        few = modelnet(tmp_path, train=40, val_fraction=0.25, shots=shots)
        np.testing.assert_array_equal(few.indices("val"), val)
        assert len(np.intersect1d(few.indices("train"), val)) == 0
    assert modelnet(tmp_path, val_fraction=0).val_dataloader() == []


def test_a_class_with_two_clouds_gives_one_to_validation_and_keeps_one(tmp_path):
    data = modelnet(tmp_path, train=8, val_fraction=0.1)  # two clouds a class
    assert Counter(data.source("train").labels[data.indices("val")].tolist()) == {0: 1, 1: 1, 2: 1, 3: 1}
    assert len(data.indices("train")) == 4


def test_shots_are_k_per_class_and_follow_the_seed(tmp_path):
    drawn = modelnet(tmp_path, train=40, shots=3, seed=1)
    labels = drawn.source("train").labels
    assert Counter(labels[drawn.indices("train")].tolist()) == {0: 3, 1: 3, 2: 3, 3: 3}
    again = modelnet(tmp_path, train=40, shots=3, seed=1)
    np.testing.assert_array_equal(again.indices("train"), drawn.indices("train"))
    other = modelnet(tmp_path, train=40, shots=3, seed=2)
    assert not np.array_equal(other.indices("train"), drawn.indices("train"))
    batch = first_batch(drawn.train_dataloader())
    assert batch["points"].shape == (2, 8, 3)


def test_training_augmentation_is_pointclips_scale_and_shift(tmp_path):
    torch.manual_seed(0)
    plain = modelnet(tmp_path, shots=1, train_augmentation=False).dataset("train")
    augmented = modelnet(tmp_path, shots=1).dataset("train")
    raw, moved = plain[0]["points"], augmented[0]["points"]
    assert not torch.allclose(raw, moved)
    # moved = raw * scale + shift per axis: solve with two points.
    scale = (moved[1] - moved[0]) / (raw[1] - raw[0])
    shift = moved[0] - raw[0] * scale
    assert torch.allclose(moved, raw * scale + shift, atol=1e-5)
    assert ((scale >= 2 / 3 - 1e-5) & (scale <= 1.5 + 1e-5)).all() and (shift.abs() <= 0.2 + 1e-5).all()
    test_points = modelnet(tmp_path, shots=1).dataset("test")[0]["points"]  # never augmented
    assert torch.equal(test_points, torch.from_numpy(clouds(8, seed=1)[0, :8]))


def test_predict_reads_the_users_cloud_files(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    np.save(own / "a.npy", clouds(1, 12)[0])
    np.savetxt(own / "b.txt", clouds(1, 12, seed=3)[0], delimiter=" ")
    data = modelnet(tmp_path, predict_clouds=str(own))
    batch = first_batch(data.predict_dataloader())
    assert batch["points"].shape == (2, 8, 3) and batch["path"] == [str(own / "a.npy"), str(own / "b.txt")]
    np.testing.assert_allclose(batch["points"][0].numpy(), clouds(1, 12)[0, :8])


def test_point_cloud_errors_name_the_file_and_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"shape_names.txt not found.*modelnet40_ply_hdf5_2048 layout"):
        ModelNet40(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"training_objectdataset_augmentedrot_scale75.h5 not found"):
        ScanObjectNN(str(tmp_path), num_workers=0).source("train")
    with pytest.raises(ValueError, match="unknown ScanObjectNN variant 'OBJ'"):
        ScanObjectNN(str(tmp_path), variant="OBJ")
    bad = clouds(6)
    bad[3, 2, 1] = np.nan
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    write_modelnet_hdf5(folder, bad, np.arange(6) % 4, NAMES, "train")
    with pytest.raises(ValueError, match=r"ply_data_train0.h5\[3\]: the cloud has NaN or infinite"):
        ModelNet40(str(tmp_path), num_points=8).source("train")
    write_modelnet_hdf5(folder, clouds(6), [0, 1, 2, 3, 4, 0], NAMES, "train")
    with pytest.raises(ValueError, match=r"ply_data_train0.h5\[4\]: label 4 is not one of the 4 classes"):
        ModelNet40(str(tmp_path), num_points=8).source("train")
    with pytest.raises(ValueError, match=r"16 points, fewer than num_points=32"):
        ModelNet40(str(tmp_path), num_points=32).source("train")
    write_modelnet_hdf5(folder, np.zeros((2, 0, 3), np.float32), [0, 1], NAMES, "test")
    with pytest.raises(ValueError, match=r"ply_data_test0.h5 \(every cloud\): the cloud has no points"):
        ModelNet40(str(tmp_path), num_points=8).source("test")
    resampled = tmp_path / "modelnet40_normal_resampled"
    write_modelnet_resampled(resampled, clouds(2), [0, 1], NAMES, "test")
    (resampled / "airplane" / "airplane_0001.txt").write_text("")
    data = ModelNet40(str(tmp_path), layout="resampled", num_points=8, num_workers=0)
    with pytest.raises(ValueError, match=r"airplane_0001.txt: the cloud has no points"):
        data.dataset("test")[0]
    (resampled / "night_stand" / "night_stand_0001.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"night_stand_0001.txt not found \(1 of the test clouds missing\)"):
        ModelNet40(str(tmp_path), layout="resampled").source("test")
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        ModelNet40(str(tmp_path), val_fraction=1.0)


# -- depth --------------------------------------------------------------------------------------


def rgbd(count: int, height: int = 480, width: int = 640, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, (count, height, width)).astype(np.float32)
    depths[:, :5] = 0  # no measurement
    return images, depths


def nyu_mat(tmp_path, **kwargs) -> tuple[NYUDepthV2, np.ndarray, np.ndarray, np.ndarray]:
    images, depths = rgbd(4)
    raw = np.where(depths > 5, 0, depths).astype(np.float32)
    raw[3, 200, 300] = np.nan  # read as 0: no measurement
    write_nyu_mat(tmp_path / "nyu_depth_v2_labeled.mat", images, depths, raw_depths=raw)
    write_nyu_splits(tmp_path / "splits.mat", train_idx=[0, 2], test_idx=[3, 1])
    options = dict(batch_size=1, eval_batch_size=2, num_workers=0) | kwargs
    return NYUDepthV2(str(tmp_path), **options), images, depths, raw


def test_nyu_mat_is_transposed_and_its_splits_one_based(tmp_path):
    data, images, depths, raw = nyu_mat(tmp_path, val_fraction=0.5)
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(path) as file:
        assert file["images"].shape == (4, 3, 640, 480) and file["depths"].shape == (4, 640, 480)
        assert file["images"][2, 1, 7, 5] == images[2, 5, 7, 1] and file["rawDepths"][1, 9, 8] == raw[1, 8, 9]
    splits = scipy.io.loadmat(tmp_path / "splits.mat")
    assert splits["testNdxs"].ravel().tolist() == [4, 2] and splits["trainNdxs"].shape == (2, 1)
    batch = first_batch(data.test_dataloader())
    assert batch["image"].shape == (2, 3, 480, 640) and batch["depth"].shape == (2, 480, 640)
    np.testing.assert_array_equal(batch["depth"].numpy(), np.nan_to_num(raw[[3, 1]]))  # rawDepths, testNdxs' order
    assert batch["depth"][0, 200, 300] == 0
    pixels = (denormalize(batch["image"]) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(pixels, images[[3, 1]])
    filled = NYUDepthV2(str(tmp_path), depth_key="depths", eval_batch_size=2, num_workers=0)
    np.testing.assert_array_equal(first_batch(filled.test_dataloader())["depth"].numpy(), depths[[3, 1]])


def test_nyu_validation_is_drawn_from_the_training_images(tmp_path):
    data, *_ = nyu_mat(tmp_path, val_fraction=0.5)
    val, train, test = (data._readers[split].indices for split in ("val", "train", "test"))
    assert sorted(val + train) == [0, 2] and len(val) == 1 and not set(val) & set(test)
    assert len(first_batch(data.train_dataloader())["depth"]) == 1


def test_eigen_crop_is_rows_45_to_470_and_columns_41_to_600():
    mask = nyu_eigen_mask(480, 640)
    assert mask.sum() == 426 * 560
    assert mask[45, 41] and mask[470, 600] and not mask[44, 41] and not mask[45, 40]
    assert not mask[471, 600] and not mask[470, 601]
    with pytest.raises(ValueError, match="defined on NYU's 480 x 640 frames"):
        nyu_eigen_mask(240, 320)


def test_garg_crop_by_hand_and_inside_the_kb_crop():
    mask = garg_mask(375, 1242)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    # 0.40810811 * 375 = 153.04, 0.99189189 * 375 = 371.96, 0.03594771 * 1242 = 44.6, 0.96405229 * 1242 = 1197.3
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (153, 371, 44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)
    assert kb_crop_box(375, 1242) == (23, 13, 352, 1216)


def test_nyu_list_layout_reads_millimetre_pngs_and_the_depthclip_window(tmp_path):
    images, depths = rgbd(2)
    listing = write_depth_list(tmp_path, images, depths, scenes=["bathroom", "kitchen"], image_format="png")
    assert listing.read_text().splitlines()[1] == "kitchen/rgb_00001.png kitchen/sync_depth_00001.png 518.8579"
    png = np.asarray(Image.open(tmp_path / "official_splits/test/kitchen/sync_depth_00001.png"))
    assert png.dtype == np.uint16 and (png == np.round(depths[1] * 1000)).all()
    data = NYUDepthV2(str(tmp_path), layout="list", input_crop="depthclip", image_size=[52, 68], num_workers=0)
    batch = first_batch(data.test_dataloader())
    assert batch["image"].shape == (2, 3, 52, 68) and batch["depth"].shape == (2, 416, 544)
    np.testing.assert_allclose(batch["depth"][1].numpy(), np.round(depths[1, 56:472, 60:604] * 1000) / 1000, atol=1e-6)
    # The Eigen crop inside DepthCLIP's window: rows 56:471, columns 60:601 of the frame, what DepthCLIP scores.
    mask = batch["evaluation_mask"][0]
    assert mask.sum() == (471 - 56) * (601 - 60) and mask[:415, :541].all()
    assert data.min_depth == 1e-3 and data.max_depth == 10.0
    assert data.val_dataloader() == []
    with pytest.raises(ValueError, match="has no train split here"):
        data.train_dataloader()


def test_nyu_training_list_with_bts_leading_slashes_gives_train_and_val(tmp_path):
    images, depths = rgbd(4)
    write_depth_list(tmp_path, images[:1], depths[:1], image_format="png")
    listing = write_depth_list(tmp_path, images, depths, list_name="train.txt", data_dir="sync", image_format="png")
    listing.write_text("".join(f"/{line}\n" for line in listing.read_text().splitlines()))  # as BTS's train list
    data = NYUDepthV2(str(tmp_path), layout="list", train_list="train.txt", val_fraction=0.25, num_workers=0)
    assert len(data.dataset("train")) == 3 and len(data.dataset("val")) == 1 and len(data.dataset("test")) == 1
    val_depth = data.dataset("val")[0]["depth"].numpy()
    assert any(np.allclose(val_depth, np.round(d * 1000) / 1000) for d in depths)
    val = data._readers["val"]
    assert val.reader.pairs[val.indices[0]][1].is_relative_to(tmp_path / "sync")  # training images, not test ones


def test_kitti_eigen_skips_none_lines_and_reads_pngs_over_256(tmp_path, caplog):
    images, depths = rgbd(3, 375, 1242)
    depths *= 8
    listing = write_kitti_eigen(tmp_path, images, [depths[0], None, depths[2]])
    lines = listing.read_text().splitlines()
    image = "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000001.png"
    assert lines[1].split() == [image, "None", "721.5377"]
    gt = tmp_path / "data_depth_annotated/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000002.png"
    assert (np.asarray(Image.open(gt)) == np.round(depths[2] * 256)).all()
    with caplog.at_level(logging.WARNING):
        data = KITTIDepth(str(tmp_path), eval_batch_size=2, num_workers=0)
    assert data.missing_depth == {"test": 1} and "1 of 3 lines have no ground truth" in caplog.text
    batch = first_batch(data.test_dataloader())
    assert batch["depth"].shape == (2, 352, 1216) and batch["image"].shape == (2, 3, 352, 1216)
    expected = np.round(depths[[0, 2], 23:, 13:1229] * 256) / 256
    np.testing.assert_allclose(batch["depth"].numpy(), expected, atol=1e-6)
    # Garg's crop of the whole 375 x 1242 frame, seen through the KB window at (23, 13).
    assert torch.equal(batch["evaluation_mask"][0], torch.from_numpy(garg_mask(375, 1242)[23:, 13:1229]))
    assert data.max_depth == 80.0
    uncropped = KITTIDepth(str(tmp_path), kb_crop=False, evaluation_crop=None, eval_batch_size=2, num_workers=0)
    full = first_batch(uncropped.test_dataloader())
    assert full["depth"].shape == (2, 375, 1242) and full["evaluation_mask"].all()


def test_training_flips_image_depth_and_mask_together(tmp_path):
    images, depths = rgbd(4)
    depths[:] = np.linspace(1, 9, 640, dtype=np.float32)  # left to right
    write_nyu_mat(tmp_path / "nyu_depth_v2_labeled.mat", images, depths)
    write_nyu_splits(tmp_path / "splits.mat", train_idx=[0, 1, 2], test_idx=[3])
    data = NYUDepthV2(str(tmp_path), val_fraction=0, num_workers=0)
    torch.manual_seed(0)
    samples = [data.dataset("train")[0] for _ in range(12)]
    flipped = [bool(s["depth"][0, 0] > s["depth"][0, -1]) for s in samples]
    assert any(flipped) and not all(flipped)
    for sample, flip in zip(samples, flipped):
        mask = torch.from_numpy(nyu_eigen_mask(480, 640))
        assert torch.equal(sample["evaluation_mask"], mask.flip(-1) if flip else mask)
    assert not data.dataset("test")[0]["depth"][0, 0] > data.dataset("test")[0]["depth"][0, -1]


def test_predict_reads_the_users_images_at_their_size(tmp_path):
    data, images, *_ = nyu_mat(tmp_path / "nyu")
    Image.fromarray(images[0, :40, :60]).save(tmp_path / "mine.png")
    data = NYUDepthV2(str(tmp_path / "nyu"), predict_images=str(tmp_path / "mine.png"), num_workers=0)
    batch = first_batch(data.predict_dataloader())
    assert batch["image"].shape == (1, 3, 40, 60) and batch["path"] == [str(tmp_path / "mine.png")]


def test_depth_errors_name_the_file_and_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)nyu_depth_v2_labeled.mat not found.*'testNdxs'"):
        NYUDepthV2(str(tmp_path))
    images, depths = rgbd(2)
    write_nyu_mat(tmp_path / "nyu_depth_v2_labeled.mat", images, depths)
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": [[1.0]], "testNdxs": [[3.0]]})
    with pytest.raises(ValueError, match=r"splits.mat: testNdxs holds 3..3; expected 1-based image numbers 1..2"):
        NYUDepthV2(str(tmp_path))
    with pytest.raises(ValueError, match=r"indices \[0\] are in both train_idx and test_idx"):
        write_nyu_splits(tmp_path / "splits.mat", [0], [0])
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": [[1.0]], "testNdxs": [[1.0], [2.0]]})
    with pytest.raises(ValueError, match=r"images \[1\] are in both trainNdxs and testNdxs"):
        NYUDepthV2(str(tmp_path))
    with pytest.raises(ValueError, match="unknown depth_key"):
        NYUDepthV2(str(tmp_path), depth_key="depth")
    (tmp_path / "data_depth_annotated").mkdir()
    with pytest.raises(FileNotFoundError, match=r"(?s)eigen_test_files_with_gt.txt not found.*data_depth_annotated"):
        KITTIDepth(str(tmp_path))
    listing = write_depth_list(tmp_path / "list", images, depths, image_format="png")
    scene = tmp_path / "list/official_splits/test/scene"
    Image.fromarray((depths[0] * 10).astype(np.uint8)).save(scene / "sync_depth_00000.png")
    data = NYUDepthV2(str(tmp_path / "list"), layout="list", num_workers=0)
    with pytest.raises(BadSampleError, match=r"sync_depth_00000.png: a depth PNG must be 16-bit grey"):
        data.dataset("test")[0]
    (scene / "sync_depth_00001.png").unlink()
    with pytest.raises(BadSampleError, match=r"sync_depth_00001.png: file not found"):
        data.dataset("test")[1]
    listing.write_text("scene/rgb_00000.png\n")
    with pytest.raises(ValueError, match=r"line 1: 'scene/rgb_00000.png' is not '<image> <depth> \[<focal>\]'"):
        NYUDepthV2(str(tmp_path / "list"), layout="list")
    kitti = tmp_path / "kitti"
    small, small_depth = rgbd(1, 300, 1000)
    write_kitti_eigen(kitti, small, small_depth)
    with pytest.raises(ValueError, match="smaller than the KITTI benchmark crop 352 x 1216"):
        KITTIDepth(str(kitti), num_workers=0).dataset("test")[0]
    mixed = tmp_path / "mixed"
    write_kitti_eigen(mixed, list(rgbd(1, 375, 1242)[0]) + list(rgbd(1, 370, 1224)[0]),
                      list(rgbd(1, 375, 1242)[1]) + list(rgbd(1, 370, 1224)[1]))  # fmt: skip
    loader = KITTIDepth(str(mixed), kb_crop=False, eval_batch_size=2, num_workers=0).test_dataloader()
    with pytest.raises(ValueError, match=r"images of different sizes .* kb_crop"):
        first_batch(loader)


def test_a_cloud_file_is_read_by_its_suffix_in_any_case_and_an_archive_is_named(tmp_path):
    from lit_clip.datamodules.point_clouds import read_cloud_file

    points = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    np.save(tmp_path / "cloud.npy", points)
    (tmp_path / "cloud.npy").rename(tmp_path / "CLOUD.NPY")
    np.testing.assert_array_equal(read_cloud_file(tmp_path / "CLOUD.NPY", None), points)
    with open(tmp_path / "archive.npy", "wb") as file:
        np.savez(file, points=points)
    with pytest.raises(ValueError, match="archive.npy: a .npz archive"):
        read_cloud_file(tmp_path / "archive.npy", None)
