"""Every notebook runs top to bottom: its code cells are executed in order in one namespace."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(notebook):
    namespace: dict = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{notebook.name}", "exec"), namespace)
    if "colour_accuracy" in namespace:  # the CLIP demo: colours are learnt within its 150 steps
        assert namespace["colour_accuracy"] > 0.5
    if "seen_miou" in namespace:  # the LSeg demo: better than background everywhere; colours by any name
        assert namespace["seen_miou"] > 2 * namespace["background_only_miou"]
        assert namespace["colour_miou"] > 0.5
    if "trained_miou" in namespace:  # the GroupViT demo: the groups fit the objects better than untrained ones
        assert namespace["trained_miou"] > namespace["untrained_miou"]
        assert namespace["trained_objects_iou"] > namespace["untrained_objects_iou"]
    if "trained_ap50" in namespace:  # the ViLD demo: detection learnt, novel compositions found by their names
        assert namespace["trained_ap50"] > max(0.05, 3 * namespace["untrained_ap50"])
        assert namespace["novel_ap50"] > 0.02
    if "max_pixel_difference" in namespace:  # the video demo: the folder's lossless files read back exactly
        assert namespace["max_pixel_difference"] == 0
        assert namespace["similarity"].shape == (3, 6)
    if "trained_recall" in namespace:  # the GLIP demo: phrases grounded, held-out names found through their words
        assert namespace["trained_recall"] > max(0.3, 5 * namespace["untrained_recall"])
        assert namespace["trained_ap50"] > 3 * namespace["untrained_ap50"] and namespace["novel_ap50"] > 0.01
    if "depthclip" in namespace:  # the 3D demo: V2 classifies 4 clouds into 8 solids, DepthCLIP fills every pixel
        assert namespace["probabilities"].shape == (4, 8)
        assert namespace["predictions"].shape == (3, 64, 64)
        assert ((namespace["predictions"] >= 1.0) & (namespace["predictions"] <= 3.0)).all()  # within the bins
    if "clipdraw_pictures" in namespace:  # CLIPDraw: the rasteriser checks out, the loss falls, the colour comes
        assert namespace["svg_difference"] < 0.02 and all(v > 0 for v in namespace["gradient_norms"].values())
        assert namespace["fit_losses"][-1] < 0.1 * namespace["fit_losses"][0]
        assert namespace["clipdraw_pictures"].shape == (2, 3, 64, 64)
        assert namespace["final_loss"] < namespace["start_loss"] - 1.0  # of -4 .. 4: the views' cosines summed
        assert namespace["red_fraction_in_red"] > max(0.2, 3 * namespace["red_fraction_in_blue"])
    if "saliency_x_edges" in namespace:  # CLIPasso: strokes start on salient edges; the best sketch beats the start
        starts, weights = namespace["starts"], namespace["saliency_x_edges"]  # [N, seeds, strokes, (x, y)]; [N, H, W]
        for picture_starts, picture_weights in zip(starts.long(), weights):
            assert (picture_weights[picture_starts[..., 1], picture_starts[..., 0]] > 0).all()
        assert namespace["sketch"].shape == (1, 3, 64, 64)
        assert namespace["best_loss"].min() < namespace["initial_loss"].min()
    if "vqgan_clip_pictures" in namespace:  # VQGAN-CLIP: the VQGAN learnt to reconstruct; the latents follow the CLIP
        assert namespace["vqgan_reconstruction_error"] < 0.8 * namespace["untrained_reconstruction_error"]
        pictures = namespace["vqgan_clip_pictures"]
        assert pictures.shape[:2] == (2, 3) and pictures.shape[2] == pictures.shape[3]
        assert namespace["vqgan_clip_final_loss"] < namespace["vqgan_clip_start_loss"]
        assert namespace["latent_in_codebook_range"]
    if "vqa_accuracy_by_hand" in namespace:  # CLIP-ViL's VQA: the official accuracy; MCAN learns on the grid
        assert namespace["vqa_accuracy_by_hand"] == pytest.approx(0.9)
        assert namespace["grid"].shape[1:] == (64, 64)  # an 8 x 8 grid of the micro ViT's 64 channels
        assert namespace["trained_accuracy"] > namespace["untrained_accuracy"] + 0.05
    if "beam_one_equals_greedy" in namespace:  # captioning: the evaluation ranks truth first; both captioners learn
        assert namespace["cider_of"]["truth"] > 3 * namespace["cider_of"]["shuffled"]
        assert namespace["beam_one_equals_greedy"]
        assert namespace["trained_cider"] > namespace["untrained_cider"] + 0.5
        assert namespace["clipcap_cider"] > namespace["untrained_cider"] + 0.3  # the sentences, at this size
