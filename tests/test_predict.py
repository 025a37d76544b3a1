"""``lit-clip predict``: embeddings from a CLIP config, class probabilities from a zero-shot config,
on the user's own images and texts (or the test split), written into the run directory."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lit_clip.datamodules import ShapesWorldClassification
from lit_clip.datamodules.predict import list_images
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def lit_clip(*args, cwd) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lit_clip", "predict", *map(str, args), "--trainer.enable_progress_bar=false"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def my_images(tmp_path) -> Path:
    folder = tmp_path / "mine"
    (folder / "nested").mkdir(parents=True)
    for name, colour in [("a.png", "red"), ("b.jpg", "blue"), ("nested/c.png", "green")]:
        Image.new("RGB", (50, 40), colour).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_clip_config_writes_embeddings_of_images_and_texts(tmp_path, my_images, lit_clip_checkpoint):
    (tmp_path / "texts.txt").write_text("a red circle.\n\na blue star.\n")
    result = lit_clip(
        "--config", ROOT / "configs/clip/shapes.yaml", f"--model.init_args.pretrained={lit_clip_checkpoint}",
        "--data.init_args.image_size=32", "--data.init_args.context_length=16",
        f"--data.init_args.predict_images={my_images}", "--data.init_args.predict_texts=texts.txt", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "clip-shapes" / "version_0"
    predictions = torch.load(run / "predictions.pt", weights_only=False)
    assert predictions["path"] == [str(my_images / n) for n in ("a.png", "b.jpg", "nested/c.png")]
    assert predictions["caption"] == ["a red circle.", "a blue star."]
    assert predictions["image_embedding"].shape[0] == 3 and predictions["text_embedding"].shape[0] == 2
    torch.testing.assert_close(predictions["image_embedding"].norm(dim=-1), torch.ones(3))
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert [row["path"] for row in rows] == predictions["path"]
    # ranking.csv: each text's images, nearest first, by the embeddings' cosine similarity
    similarity = predictions["text_embedding"] @ predictions["image_embedding"].T
    ranking = list(csv.DictReader(open(run / "ranking.csv")))
    assert [(row["query"], int(row["rank"])) for row in ranking] == [(q, r) for q in predictions["caption"] for r in (1, 2, 3)]
    for row in ranking:
        query, item = predictions["caption"].index(row["query"]), predictions["path"].index(row["path"])
        assert float(row["similarity"]) == pytest.approx(similarity[query, item].item(), abs=1e-4)
        assert (similarity[query] > similarity[query, item] + 1e-6).sum() == int(row["rank"]) - 1


def test_zeroshot_config_writes_class_probabilities_of_my_images(tmp_path, my_images, lit_clip_checkpoint):
    result = lit_clip(
        "--config", ROOT / "configs/zeroshot/shapes.yaml", f"--model.init_args.pretrained={lit_clip_checkpoint}",
        "--data.init_args.image_size=32", f"--data.init_args.predict_images={my_images}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = next((tmp_path / "runs").glob("*/version_0"))
    predictions = torch.load(run / "predictions.pt", weights_only=False)
    classes = ShapesWorldClassification().classnames
    assert predictions["probabilities"].shape == (3, len(classes))
    torch.testing.assert_close(predictions["probabilities"].sum(dim=-1), torch.ones(3))
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert [Path(row["path"]).name for row in rows] == ["a.png", "b.jpg", "c.png"]
    for row, probabilities in zip(rows, predictions["probabilities"]):
        assert row["predicted_class"] == classes[int(probabilities.argmax())]
        assert float(row["probability"]) == pytest.approx(float(probabilities.max()))


def test_without_my_images_predict_reads_the_test_split(tmp_path, lit_clip_checkpoint):
    result = lit_clip(
        "--config", ROOT / "configs/zeroshot/shapes.yaml", f"--model.init_args.pretrained={lit_clip_checkpoint}",
        "--data.init_args.image_size=32", "--data.init_args.test_per_class=1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = torch.load(next((tmp_path / "runs").glob("*/version_0/predictions.pt")), weights_only=False)
    assert predictions["index"].tolist() == list(range(64)) and predictions["label"].tolist() == list(range(64))


def test_image_sources_and_their_errors(tmp_path, my_images):
    listing = tmp_path / "list.txt"
    listing.write_text("mine/b.jpg\n\nmine/a.png\n")
    assert list_images(listing) == [tmp_path / "mine/b.jpg", tmp_path / "mine/a.png"]
    assert list_images(my_images / "a.png") == [my_images / "a.png"]
    with pytest.raises(FileNotFoundError, match=r"predict_images: .*nowhere is neither a folder"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no image files .* under .*empty"):
        list_images(tmp_path / "empty")


def test_glip_grounds_a_sentence_or_names_on_the_users_images_into_a_table_and_drawings(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    Image.new("RGB", (70, 50), "red").save(folder / "wide.png")
    Image.new("RGB", (40, 60), "blue").save(folder / "tall.jpg")
    micro = [
        "--model.init_args.backbone=resnet18", "--model.init_args.channels=32", "--model.init_args.text_width=32",
        "--model.init_args.text_layers=1", "--model.init_args.text_heads=2", "--model.init_args.blocks=1",
        "--model.init_args.fusion_depth=1", "--model.init_args.fusion_dim=32", "--model.init_args.fusion_heads=2",
        "--model.init_args.min_size=64", "--model.init_args.max_size=64", "--model.init_args.score_threshold=0.0",
        "--model.init_args.detections_per_image=5",
    ]  # fmt: skip
    for prompt, phrases in [("a small red circle above two blue stars", {"small red circle", "blue stars"}),
                            ("[red circle, blue star]", {"red circle", "blue star"})]:  # fmt: skip
        result = lit_clip("--config", ROOT / "configs/glip/shapes.yaml", *micro, f"--model.init_args.prompt={prompt}",
                          f"--data.init_args.predict_images={folder}", cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        run = sorted((tmp_path / "runs" / "glip-shapes").iterdir())[-1]
        rows = list(csv.DictReader(open(run / "predictions.csv")))
        assert {row["phrase"] for row in rows} <= phrases and rows
        assert {Path(row["path"]).name for row in rows} == {"wide.png", "tall.jpg"}
        for row in rows:  # boxes in the file's own pixels
            width, height = Image.open(row["path"]).size
            assert 0 <= float(row["x1"]) <= float(row["x2"]) <= width
            assert 0 <= float(row["y1"]) <= float(row["y2"]) <= height
        assert {p.name for p in (run / "drawings").iterdir()} == {"wide.png", "tall.png"}
        assert Image.open(run / "drawings" / "wide.png").size[0] >= 70


def test_clip4clip_ranks_my_videos_for_my_text_queries(tmp_path, lit_clip_checkpoint):
    from lit_clip.datamodules.export_video import write_video
    from lit_clip.datamodules.shapesworld import ShapesWorldClips

    clips = ShapesWorldClips(image_size=32, num_frames=8)
    folder = tmp_path / "my_videos"
    (folder / "nested").mkdir(parents=True)
    names = ["left.mp4", "nested/grow.avi", "up.mkv"]
    for k, name in enumerate(names):
        write_video(folder / name, clips.clip("test", k).frames, fps=4)
    (folder / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "queries.txt").write_text("a red circle moving left\na shape growing\n")
    result = lit_clip(
        "--config", ROOT / "configs/clip4clip/shapes.yaml", f"--model.init_args.pretrained={lit_clip_checkpoint}",
        "--model.init_args.cross_num_hidden_layers=2", "--data.init_args.image_size=32",
        "--data.init_args.context_length=16", "--data.init_args.held_out=[]",
        f"--data.init_args.predict_videos={folder}", "--data.init_args.predict_texts=queries.txt", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "clip4clip-shapes" / "version_0"
    predictions = torch.load(run / "predictions.pt", weights_only=False)
    assert sorted(predictions["path"]) == sorted(str(folder / n) for n in names)  # the broken file skipped
    assert predictions["video_embedding"].shape[0] == 3 and predictions["text_embedding"].shape[0] == 2
    ranking = list(csv.DictReader(open(run / "ranking.csv")))
    assert [row["query"] for row in ranking] == ["a red circle moving left"] * 3 + ["a shape growing"] * 3
    assert sorted(row["path"] for row in ranking[:3]) == sorted(predictions["path"])
