"""The demo page's video tab through Gradio's client: a CLIP4Clip checkpoint's query scores and an ActionCLIP
checkpoint's class probabilities for a ShapesWorld clip equal the methods' computed in Python on the clip's decoded
frames (a DiDeMo checkpoint's: those of the video's first 31 s, as its data module reads them); the frames strip
shows them; bad input is a message on the page."""
import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import lit_clip
from lit_clip import drawing
from lit_clip.datamodules.export_video import write_video
from lit_clip.datamodules.shapesworld.clips import MOTIONS
from lit_clip.datamodules.shapesworld.video import ACTION_TEMPLATES
from lit_clip.datamodules.video import read_clip, video_transform
from lit_clip.demo import video
from lit_clip.demo.weights import Weights, find_checkpoints
from lit_clip.methods import ActionCLIP, CLIP4Clip
from lit_clip.templates import fill_template

VIDEO = [("Video", video)]
FRAME_SIZE = 32  # the image_size of the tests' ShapesWorldVideo runs


@pytest.fixture(scope="module")
def video_checkpoints(tmp_path_factory, lit_clip_checkpoint):
    """One-step ``lit-clip fit`` runs of configs/clip4clip/shapes.yaml and configs/actionclip/shapes.yaml."""
    return {name: fit_checkpoint(f"{name}/shapes.yaml", tmp_path_factory.mktemp(name), lit_clip_checkpoint)
            for name in ("clip4clip", "actionclip")}  # fmt: skip


def serve(demo_page, *checkpoints, folders=()):
    """The video tab of a page that found ``checkpoints`` (and reads typed paths in ``folders``), and their
    drop-down labels."""
    weights = Weights(None, find_checkpoints(checkpoints), folders=folders)
    return demo_page(weights, VIDEO), *weights.choices("video")


def as_didemo(checkpoint, folder):
    """A copy of a CLIP4Clip checkpoint that records DiDeMo as its data module (4 frames, one a second: CLIP4Clip's
    "fps" sampling): the page rebuilds it (its files are read only for a split) and reads videos as its predict
    loader does, only their first 31 s (the class's ``max_seconds``, which no recorded argument holds)."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    content["datamodule_hyper_parameters"] = {
        "_class_path": "lit_clip.datamodules.DiDeMo", "root": str(folder / "didemo"), "num_frames": 4,
        "sampling": "fps", "image_size": FRAME_SIZE, "context_length": 16,
    }  # fmt: skip
    path = folder / "didemo.ckpt"
    torch.save(content, path)
    return path


def model_input(path) -> torch.Tensor:
    """``[1, 8, 3, S, S]``: every frame of an example clip, decoded with PyAV (a clip of 8 frames, the 8 that the
    data module's uniform sampling of 8 takes), through the video data modules' evaluation transform."""
    with av.open(str(path)) as container:
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    assert len(frames) == 8
    return video_transform(FRAME_SIZE)(frames)[None]


def assert_page_answer(answer, texts: list[str], scores: torch.Tensor, probabilities: torch.Tensor, pixels):
    """The page's Label holds ``probabilities``, its table ``scores`` best first (rounded to 4 places), and its
    strip the frames the model saw, captioned with the best text."""
    labels, table, strip = answer
    on_page = {entry["label"]: entry["confidence"] for entry in labels["confidences"]}
    assert set(on_page) == set(texts)
    torch.testing.assert_close(torch.tensor([on_page[t] for t in texts]), probabilities, atol=1e-5, rtol=1e-4)
    order = scores.argsort(descending=True).tolist()
    assert [row[0] for row in table["data"]] == [texts[i] for i in order]
    assert [row[1] for row in table["data"]] == pytest.approx(scores[order].tolist(), abs=2e-4)
    expected_strip = drawing.frame_strips([list(drawing.to_uint8_image(pixels[0]))], [texts[order[0]]], video.FRAME_PX)
    np.testing.assert_array_equal(np.asarray(Image.open(strip).convert("RGB")), expected_strip)


def test_retrieval_through_the_page_equals_clip4clip_in_python(video_checkpoints, demo_page, tmp_path):
    didemo = as_didemo(video_checkpoints["clip4clip"], tmp_path)
    client, choice, didemo_choice = serve(demo_page, video_checkpoints["clip4clip"], didemo)
    clips = video.example_clips(tmp_path / "examples")
    queries = [caption for _, caption in clips]
    path = clips[1][0]  # growing: the same draw as the others, only the motion differs
    answer = client.predict(choice, handle_file(str(path)), "\n".join(queries), api_name="/score_video")

    method = CLIP4Clip.load_from_checkpoint(video_checkpoints["clip4clip"]).eval()

    def scores_of(pixels):  # the scaled cosines CLIP4Clip ranks by, of the queries at ShapesWorldVideo's 16 tokens
        with torch.no_grad():
            video_embedding = method.encode_video(pixels, torch.ones(pixels.shape[:2], dtype=torch.bool))
            text = method.encode_text(lit_clip.tokenize(queries, context_length=16))
            return (method.model.logit_scale.exp() * text @ video_embedding.T)[:, 0]

    pixels = model_input(path)
    scores = scores_of(pixels)
    assert_page_answer(answer, queries, scores, scores.softmax(dim=-1), pixels)

    # DiDeMo's videos: 4 of the frames of their first 31 seconds, one a second; here 40 s, a level of grey a second.
    long_video = tmp_path / "forty_seconds.mp4"
    write_video(long_video, [np.full((FRAME_SIZE, FRAME_SIZE, 3), 6 * second, np.uint8) for second in range(40)], 1)
    answer = client.predict(didemo_choice, handle_file(str(long_video)), "\n".join(queries), api_name="/score_video")
    frames = read_clip(long_video, 4, "fps", max_seconds=31)
    assert not torch.equal(frames, read_clip(long_video, 4, "fps"))  # the first 31 s alone: other frames
    pixels = video_transform(FRAME_SIZE)(frames)[None]
    scores = scores_of(pixels)
    assert_page_answer(answer, queries, scores, scores.softmax(dim=-1), pixels)


def test_recognition_through_the_page_equals_actionclip_in_python(video_checkpoints, demo_page, tmp_path):
    client, choice = serve(demo_page, video_checkpoints["actionclip"])
    path = video.example_clips(tmp_path / "examples")[0][0]
    names = list(MOTIONS)
    answer = client.predict(choice, handle_file(str(path)), ", ".join(names), api_name="/score_video")

    # ActionCLIP's test.py written out: softmax of 100 x the cosines per template, averaged over the templates.
    method = ActionCLIP.load_from_checkpoint(video_checkpoints["actionclip"]).eval()
    pixels = model_input(path)
    with torch.no_grad():
        clip_embedding = F.normalize(method.encode_video(pixels, torch.ones(1, 8, dtype=torch.bool)), dim=-1)
        per_template = []
        for template in ACTION_TEMPLATES:
            prompts = lit_clip.tokenize([fill_template(template, n) for n in names], method.model.context_length)
            classes = F.normalize(method.model.encode_text(prompts), dim=-1)
            per_template.append((100 * clip_embedding @ classes.T).softmax(dim=-1)[0])
        probabilities = torch.stack(per_template).mean(dim=0)
    assert_page_answer(answer, names, probabilities, probabilities, pixels)


def test_bad_input_is_a_message_on_the_page(video_checkpoints, demo_page, tmp_path):
    client, choice = serve(demo_page, video_checkpoints["clip4clip"], folders=[tmp_path])
    clip, caption = video.example_clips(tmp_path / "examples")[0]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:300])
    with pytest.raises(AppError, match=r"broken\.mp4: cannot decode video .*expected a video file"):
        client.predict(choice, handle_file(str(broken)), caption, api_name="/score_video")
    picture = tmp_path / "examples" / "red_circle.png"  # written by the page's examples
    with pytest.raises(AppError, match=r"red_circle\.png is not a video file; expected a video file \(\.mp4"):
        client.predict(choice, handle_file(str(picture)), caption, api_name="/score_video")
    with pytest.raises(AppError, match="type the queries"):
        client.predict(choice, handle_file(str(clip)), " \n ", api_name="/score_video")
    with pytest.raises(AppError, match="give a video"):
        client.predict(choice, None, caption, api_name="/score_video")
    with pytest.raises(AppError, match=r"missing\.ckpt not found"):  # a typed path inside the page's folders
        client.predict(str(tmp_path / "missing.ckpt"), handle_file(str(clip)), caption, api_name="/score_video")
