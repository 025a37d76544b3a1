"""The demo page's video tab through Gradio's client: a CLIP4Clip checkpoint's query scores and an ActionCLIP
checkpoint's class probabilities for a ShapesWorld clip equal the methods' computed in Python on the clip's decoded
frames; the frames strip shows them; bad input is a message on the page."""
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
from lit_clip.datamodules.shapesworld.clips import MOTIONS
from lit_clip.datamodules.shapesworld.video import ACTION_TEMPLATES
from lit_clip.datamodules.video import video_transform
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


def serve(demo_page, checkpoint):
    """The video tab of a page that found ``checkpoint``, and its drop-down label."""
    weights = Weights(None, find_checkpoints([checkpoint]))
    (choice,) = weights.choices("video")
    return demo_page(weights, VIDEO), choice


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
    client, choice = serve(demo_page, video_checkpoints["clip4clip"])
    clips = video.example_clips(tmp_path / "examples")
    queries = [caption for _, caption in clips]
    path = clips[1][0]  # growing: the same draw as the others, only the motion differs
    answer = client.predict(choice, handle_file(str(path)), "\n".join(queries), api_name="/score_video")

    method = CLIP4Clip.load_from_checkpoint(video_checkpoints["clip4clip"]).eval()
    pixels = model_input(path)
    with torch.no_grad():
        clip_embedding = method.encode_video(pixels, torch.ones(1, 8, dtype=torch.bool))
        text = method.encode_text(lit_clip.tokenize(queries, context_length=method.model.context_length))
        scores = (method.model.logit_scale.exp() * text @ clip_embedding.T)[:, 0]  # the scaled cosines it ranks by
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
    client, choice = serve(demo_page, video_checkpoints["clip4clip"])
    clip, caption = video.example_clips(tmp_path / "examples")[0]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:300])
    with pytest.raises(AppError, match=r"broken\.mp4: cannot decode video .*expected a video file"):
        client.predict(choice, handle_file(str(broken)), caption, api_name="/score_video")
    picture = tmp_path / "examples" / "red_circle.png"  # written by the page's examples
    with pytest.raises(AppError, match=r"red_circle\.png holds a single frame .*expected a video file"):
        client.predict(choice, handle_file(str(picture)), caption, api_name="/score_video")
    with pytest.raises(AppError, match="type the queries"):
        client.predict(choice, handle_file(str(clip)), " \n ", api_name="/score_video")
    with pytest.raises(AppError, match="give a video"):
        client.predict(choice, None, caption, api_name="/score_video")
    with pytest.raises(AppError, match="not found"):
        client.predict(str(tmp_path / "missing.ckpt"), handle_file(str(clip)), caption, api_name="/score_video")
