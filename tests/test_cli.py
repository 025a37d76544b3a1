"""The command line as a user meets it: every config runs, configs compose, bad input gets a clear error."""
import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from lit_clip.datamodules.export import (
    export_ade20k,
    export_audio_clips_csv,
    export_coco20i,
    export_coco_captions,
    export_coco_karpathy,
    export_coco_detection,
    export_coco_stuff,
    export_coop,
    export_csv_pairs,
    export_esc50,
    export_fss1000,
    export_imagefolder,
    export_lvis_detection,
    export_mdetr_grounding,
    export_objects365_detection,
    export_odinw_detection,
    export_pascal5i,
    export_pascal_context,
    export_urbansound8k,
    export_voc_segmentation,
    export_vqa_v2,
    export_webdataset,
)
from lit_clip.datamodules.export_3d import write_depth_list, write_modelnet_hdf5, write_scanobjectnn
from lit_clip.datamodules.export_video import (
    export_didemo,
    export_hmdb51,
    export_kinetics,
    export_msrvtt,
    export_msvd,
    export_timed_captions,
    export_ucf101,
)
from lit_clip.datamodules.shapesworld import ShapesWorld
from lit_clip.datamodules.shapesworld.clips import ShapesWorldClips
from lit_clip.datamodules.shapesworld.depth import ShapesWorldDepthScenes
from lit_clip.datamodules.shapesworld.solids import ShapesWorldSolids
from lit_clip.models.vqgan import VQGAN
from lit_clip.datamodules.shapesworld.segmentation import held_out_compositions
from lit_clip.datamodules.shapesworld.world import COLORS, SHAPES
from lit_clip.datamodules.point_clouds import MODELNET10_CLASSES

from lit_clip.cli import main
from lit_clip.models import create_model
from lit_clip.models.language import word_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
BASE = CONFIGS / "clip" / "shapes.yaml"
PRESETS = sorted((CONFIGS / "presets").glob("*.yaml"))
METHOD_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "presets")
VIDEO_DATA = ("MSRVTT", "MSVD", "DiDeMo", "Kinetics400", "UCF101", "HMDB51")
THREE_D_DATA = ("ModelNet40", "ModelNet10", "ScanObjectNN", "NYUDepthV2")  # sized in their own branch
FEATURE_DIM = 16  # the width of the exported per-second features (S3D's 512)


def lit_clip(*args, cwd, module=False):
    """Run the CLI in a fresh process, as a user would (DDP relaunches the same command line)."""
    command = [sys.executable, "-m", "lit_clip"] if module else [str(Path(sys.executable).parent / "lit-clip")]
    return subprocess.run([*command, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def assert_ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def init_parameters(section: dict) -> dict[str, inspect.Parameter]:
    module, name = section["class_path"].rsplit(".", 1)
    return dict(inspect.signature(getattr(importlib.import_module(module), name)).parameters)


def needs(section: dict, name: str) -> bool:
    """Whether the config must be given ``name``: the class requires it or the config sets a path for it."""
    parameter = init_parameters(section).get(name)
    return parameter is not None and (
        parameter.default is inspect.Parameter.empty or name in section.get("init_args", {})
    )


def fixture_arguments(config: Path, tmp_path: Path, checkpoint: Path) -> list[str]:
    """Stand-ins for what a config leaves to the user: weights (a tiny lit-clip checkpoint) and data
    (ShapesWorld exported in the module's real on-disk layout), at a small image and text size."""
    parsed = yaml.safe_load(config.read_text())
    data, data_class = tmp_path / "data", parsed["data"]["class_path"].rsplit(".", 1)[1]
    model_class = parsed["model"]["class_path"].rsplit(".", 1)[1]
    arguments = []
    if model_class.startswith("GroupViT"):  # a GroupViT's weights, the CPU-sized architecture
        checkpoint = tmp_path / "groupvit-micro.pt"
        torch.save(create_model("GroupViT-Micro").state_dict(), checkpoint)
        if "architecture" in parsed["model"].get("init_args", {}):
            arguments.append("--model.init_args.architecture=GroupViT-Micro")
    if model_class == "CLIPasso":  # its geometric loss reads a ResNet's stages: a random RN-Tiny
        checkpoint = tmp_path / "rn-tiny.pt"
        torch.save(create_model("RN-Tiny").state_dict(), checkpoint)
        arguments += ["--model.init_args.architecture=RN-Tiny", "--model.init_args.saliency_clip=null"]
        arguments += ["--data.init_args.image_size=64"]
    if needs(parsed["model"], "pretrained"):
        arguments.append(f"--model.init_args.pretrained={checkpoint}")
    if model_class in ("CLIPDraw", "CLIPasso", "VQGANCLIP"):
        # The ShapesWorld configs' judge, where their relative path points (the test runs in tmp_path).
        judge = tmp_path / "runs" / "clip-shapes-judge" / "version_0" / "checkpoints" / "last.ckpt"
        judge.parent.mkdir(parents=True)
        judge.write_bytes(Path(checkpoint).read_bytes())
    if model_class == "CLIPDraw":
        arguments += ["--model.init_args.num_paths=16", "--model.init_args.canvas_size=64"]
    if model_class == "VQGANCLIP":  # a tiny random VQGAN in taming's layout, with taming's model.yaml
        tiny = dict(embed_dim=8, n_embed=16, ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8],
                    resolution=16, z_channels=8)  # fmt: skip
        torch.save({"state_dict": VQGAN(**tiny).state_dict()}, tmp_path / "vqgan.ckpt")
        ddconfig = {key: value for key, value in tiny.items() if key not in ("embed_dim", "n_embed")}
        taming = {"model": {"params": {"embed_dim": 8, "n_embed": 16, "ddconfig": {**ddconfig, "double_z": False}}}}
        (tmp_path / "model.yaml").write_text(yaml.safe_dump(taming))
        arguments.append(f"--model.init_args.vqgan={tmp_path / 'vqgan.ckpt'}")
        arguments.append(f"--model.init_args.vqgan_config={tmp_path / 'model.yaml'}")
        arguments += ["--model.init_args.image_size=32", "--model.init_args.cutouts=2"]
    if model_class == "MCANVQA":  # a micro MCAN on the stand-in CLIP's grid at its own size
        arguments += ["--model.init_args.input_size=null", "--model.init_args.hidden=16", "--model.init_args.layers=1",
                      "--model.init_args.heads=2", "--model.init_args.word_dim=8", "--model.init_args.flat_mlp=16",
                      "--model.init_args.flat_out=16"]  # fmt: skip
    if data_class == "ShapesWorldQuestions":
        arguments += ["--data.init_args.image_size=32", "--data.init_args.batch_size=8"]
    if model_class in ("TransformerCaptioning", "ClipCap"):  # METEOR (Java, seconds) is tested with the metrics
        arguments.append("--model.init_args.with_meteor=false")
    if model_class == "TransformerCaptioning":  # a micro captioner on the stand-in CLIP's grid at its own size
        arguments += ["--model.init_args.input_size=null", "--model.init_args.hidden=16", "--model.init_args.layers=1",
                      "--model.init_args.heads=2", "--model.init_args.ff=32",
                      "--model.init_args.max_length=6"]  # fmt: skip
    if model_class == "ClipCap":  # a micro GPT-2 over the data module's words (no GPT-2 or tokenizer offline)
        gpt2 = json.dumps({"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 64})
        arguments += [f"--model.init_args.language_model={gpt2}", "--model.init_args.tokenizer=null",
                      "--model.init_args.prefix_length=2", "--model.init_args.clip_length=2",
                      "--model.init_args.mapping_layers=1", "--model.init_args.max_tokens=6",
                      "--model.init_args.beam_size=2"]  # fmt: skip
    if data_class == "ShapesWorldCaptioning":
        arguments += ["--data.init_args.image_size=32", "--data.init_args.batch_size=4",
                      "--data.init_args.vocabulary_scenes=20"]  # fmt: skip
    if data_class == "CoOpClassification":
        dataset = parsed["data"]["init_args"]["dataset"]
        splits = ("train", "val") if dataset == "ImageNet" else ("train", "val", "test")
        export_coop(data, {s: 1 for s in splits}, dataset=dataset, vocabulary="shape")
        arguments.append(f"--data.init_args.root={data}")
    elif data_class == "CoOpFewShot":
        dataset = parsed["data"]["init_args"]["dataset"]
        per_class = {"train": 4, "val": 2} if dataset == "ImageNet" else {"train": 4, "val": 2, "test": 1}
        export_coop(data, per_class, dataset=dataset, vocabulary="shape")
        arguments += [f"--data.init_args.root={data}", "--data.init_args.shots=2"]
    elif data_class == "ImageFolderClassification":
        export_imagefolder(data, {s: 1 for s in ("train", "val", "test")}, vocabulary="shape")
        arguments.append(f"--data.init_args.root={data}")
    elif data_class == "CocoCaptions":
        export_coco_captions(data, {"train": 16, "val": 4})
        arguments.append(f"--data.init_args.root={data}")
    elif data_class == "CsvPairs":
        export_csv_pairs(data, {"train": 16, "val": 4})
        arguments += [f"--data.init_args.train_file={data / 'train.csv'}", f"--data.init_args.val_file={data / 'val.csv'}"]
    elif data_class == "WebDatasetPairs":
        export_webdataset(data, 16, shard_size=8)
        arguments += [f"--data.init_args.train_shards={data}/shard-{{000000..000001}}.tar"]
        arguments.append("--data.init_args.train_samples_per_epoch=16")
    elif data_class == "PascalVOCSegmentation":
        export_voc_segmentation(data, {"train": 2, "val": 1}, image_size=32)
        arguments.append(f"--data.init_args.root={data}")
    elif data_class in ("PascalContextSegmentation", "PascalContext60Segmentation"):
        export_pascal_context(data, {"train": 2, "val": 1}, image_size=32)
        arguments.append(f"--data.init_args.root={data}")
    elif data_class in ("COCOStuffSegmentation", "COCOObjectSegmentation"):
        export_coco_stuff(data, {"train": 2, "val": 1}, image_size=32)
        arguments.append(f"--data.init_args.root={data}")
    elif data_class == "ADE20KSegmentation":
        export_ade20k(data, {"train": 2, "val": 1}, image_size=32)
        arguments += [f"--data.init_args.root={data}", "--data.init_args.base_size=36", "--data.init_args.crop_size=32"]
    elif data_class in ("Pascal5iSegmentation", "COCO20iSegmentation", "FSS1000Segmentation"):
        if data_class == "Pascal5iSegmentation":
            export_pascal5i(data, {"train": 2, "val": 2}, image_size=32)
        elif data_class == "COCO20iSegmentation":
            export_coco20i(data, {"train": 1, "val": 1}, image_size=32)
        else:
            export_fss1000(data, {"train": 2, "val": 1, "test": 1}, images_per_category=2, image_size=32)
        arguments += [f"--data.init_args.root={data}", "--data.init_args.image_size=32"]
        arguments.append("--data.init_args.eval_batch_size=2")
        if data_class != "FSS1000Segmentation":
            arguments.append("--data.init_args.episodes=2")
    elif data_class in ("COCODetection", "LVISDetection"):
        # ShapesWorld scenes, their held-out compositions in no training scene: novel (LVIS's rare ones).
        world = ShapesWorld(image_size=64, max_objects=4, held_out=held_out_compositions(16))
        if data_class == "COCODetection":
            export_coco_detection(data, world, {"train": 4, "val": 2})
            # The files name ShapesWorld's categories, not COCO's: evaluate them all, the held-out ones novel.
            arguments += ["--data.init_args.split=all", f"--data.init_args.novel={json.dumps(world.held_out)}"]
        else:
            export_lvis_detection(data, world, {"train": 4, "val": 2})
        arguments += [f"--data.init_args.root={data}", "--data.init_args.eval_batch_size=2"]
        if parsed["data"]["init_args"].get("scale_jitter"):  # jittered crops of the scenes' own size
            arguments.append("--data.init_args.crop_size=64")
    elif data_class == "MDETRGrounding":
        export_mdetr_grounding(data, ShapesWorld(image_size=64, max_objects=3), {"train": 4, "val": 2, "test": 2})
        files = {split: data / "mdetr_annotations" / f"final_flickr_separateGT_{split}.json" for split in
                 ("train", "val", "test")}  # fmt: skip
        arguments += [f"--data.init_args.root={data / 'flickr30k-images'}", "--data.init_args.eval_batch_size=2"]
        arguments += [f"--data.init_args.{split}_file={path}" for split, path in files.items()]
    elif data_class == "GroundingMixture":  # every source's data exported; the config's sources, their paths replaced
        world = ShapesWorld(image_size=64, max_objects=3)
        export_coco_detection(data / "coco", world, {"train": 4, "val": 2})
        export_objects365_detection(data / "objects365", world, {"train": 4, "val": 2})
        export_mdetr_grounding(data / "flickr", world, {"train": 4, "val": 2, "test": 2})
        train_file = data / "flickr" / "mdetr_annotations" / "final_flickr_separateGT_train.json"
        paths = {"COCODetection": {"root": str(data / "coco")},
                 "Objects365Detection": {"root": str(data / "objects365")},
                 "MDETRGrounding": {"root": str(data / "flickr" / "flickr30k-images"), "train_file": str(train_file)}}
        sources = []
        for source in parsed["data"]["init_args"]["sources"]:
            kind = source["class_path"].rsplit(".", 1)[1]
            options = {**source["init_args"], **paths[kind], "num_workers": 0, "eval_batch_size": 2}
            sources.append({"class_path": source["class_path"], "init_args": options})
        arguments.append(f"--data.init_args.sources={json.dumps(sources)}")
    elif data_class == "KarpathyCaptions":  # ShapesWorld scenes in Karpathy's dataset_coco.json and COCO's folders
        export_coco_karpathy(data, {"train": 6, "restval": 2, "val": 2, "test": 2}, image_size=32)
        arguments += [f"--data.init_args.root={data}", "--data.init_args.min_word_count=1"]
    elif data_class == "VQAv2":  # ShapesWorld questions in VQA v2's files
        export_vqa_v2(data, {"train2014": 8, "val2014": 4}, image_size=32)
        arguments += [f"--data.init_args.root={data}", "--data.init_args.min_answer_count=1"]
    elif data_class == "ODinWDetection":
        export_odinw_detection(data, ShapesWorld(image_size=64, max_objects=3), {"train": 4, "valid": 2, "test": 2})
        arguments += [f"--data.init_args.root={data}", "--data.init_args.eval_batch_size=2"]
    elif data_class in ("ESC50", "UrbanSound8K"):  # 4 classes, clips in folds 1 and 2 (the test fold: 1)
        export = export_esc50 if data_class == "ESC50" else export_urbansound8k
        export(data, clips_per_class=2, classes=4, duration=0.5)
        arguments.append(f"--data.init_args.root={data}")
    elif data_class == "AudioClips":
        export_audio_clips_csv(data, {"train": 4, "val": 2}, sample_rate=8000, duration=0.5)
        arguments += [f"--data.init_args.train_csv={data / 'train.csv'}", f"--data.init_args.val_csv={data / 'val.csv'}"]
    elif data_class in ("MSRVTT", "MSVD", "DiDeMo"):  # 2-second clips: 2 frames at 1 fps (DiDeMo's: 3 clips, 6)
        clips = ShapesWorldClips(image_size=32)
        if data_class == "MSRVTT":
            export_msrvtt(data, train_videos=2, test_videos=2, clips=clips)
        else:
            export = export_msvd if data_class == "MSVD" else export_didemo
            export(data, {"train": 2, "val": 2, "test": 2}, clips=clips)
        arguments.append(f"--data.init_args.root={data}")
    elif data_class in ("Kinetics400", "UCF101", "HMDB51"):  # 2 classes, 2 training videos (HMDB51: 4)
        clips, motions = ShapesWorldClips(image_size=32), ("moving left", "moving right")
        if data_class == "Kinetics400":
            export_kinetics(data, {"train": 1, "val": 1}, clips, motions)
        elif data_class == "UCF101":  # split 1 tests on group 1, trains on group 8
            export_ucf101(data, groups=(1, 8), clips=clips, motions=motions)
        else:
            export_hmdb51(data, clips=clips, motions=motions)
        arguments.append(f"--data.init_args.root={data}")
    elif data_class == "TimedCaptions":  # per-second features of 6-second videos; the lists the config names
        export_timed_captions(data, {"train": 2, "val": 2, "test": 2}, feature_dim=FEATURE_DIM,
                              clips=ShapesWorldClips(image_size=32))  # fmt: skip
        arguments.append(f"--data.init_args.captions={data / 'caption.json'}")
        arguments.append(f"--data.init_args.features_dir={data / 's3d'}")
        for split in ("train", "val", "test"):
            if needs(parsed["data"], f"{split}_list"):
                arguments.append(f"--data.init_args.{split}_list={data / f'{split}_list.txt'}")
    elif data_class in ("ModelNet40", "ModelNet10", "ScanObjectNN"):  # ShapesWorld solids, 2 per class and split
        solids, classes = ShapesWorldSolids(num_points=64), 2 if data_class == "ScanObjectNN" else len(MODELNET10_CLASSES)
        for split in ("train", "test"):
            clouds = [solids.cloud(split, k).points for k in range(2 * classes)]
            labels = [k % classes for k in range(2 * classes)]
            if data_class == "ScanObjectNN":
                write_scanobjectnn(data, parsed["data"]["init_args"]["variant"], split, clouds, labels)
            else:  # ModelNet10's classes, as ModelNet40's files name them
                write_modelnet_hdf5(data, clouds, labels, MODELNET10_CLASSES, split)
        arguments += [f"--data.init_args.root={data}", "--data.init_args.num_points=64", "--data.init_args.num_workers=0"]
        arguments += ["--data.init_args.batch_size=4", "--data.init_args.val_fraction=0.5"]
        if parsed["data"]["init_args"].get("shots"):
            arguments.append("--data.init_args.shots=1")
    elif data_class == "NYUDepthV2":  # 480 x 640 frames (DepthCLIP's input window needs them), 2 test images
        scenes = ShapesWorldDepthScenes(image_size=480)
        frames = [scenes.scene("test", k) for k in range(2)]
        images = [np.asarray(frame.image.resize((640, 480))) for frame in frames]
        depths = [np.asarray(Image.fromarray(frame.depth).resize((640, 480), Image.NEAREST)) for frame in frames]
        write_depth_list(data, images, depths)
        arguments += [f"--data.init_args.root={data}", "--data.init_args.num_workers=0", "--data.init_args.image_size=[32,32]"]
    if data_class == "ShapesWorldPoints":
        arguments += ["--data.init_args.val_samples=16", "--data.init_args.test_samples=8", "--data.init_args.batch_size=4"]
        if parsed["data"]["init_args"].get("shots"):
            arguments.append("--data.init_args.shots=1")
    if data_class == "ShapesWorldDepth":  # the stand-in CLIP's ViT takes 32 px
        arguments += ["--data.init_args.image_size=32", "--data.init_args.test_samples=4", "--data.init_args.batch_size=4"]
    if model_class == "LinearProbe" and data_class == "ShapesWorldClassification":  # a short C sweep: 1 min less
        arguments += ["--data.init_args.train_per_class=2", "--data.init_args.val_per_class=1"]
        arguments.append("--model.init_args.max_iter=100")
    if model_class == "SLIPPretraining":  # a micro CLIP and SSL head in place of the paper's ViT-B/16 and 4096-wide head
        arguments += ["--model.init_args.architecture=ViT-Micro-8", "--model.init_args.ssl_hidden_dim=32"]
    if model_class == "AudioCLIPPretraining":  # the CPU-sized audio tower, no AudioSet weights
        arguments += ["--model.init_args.audio_architecture=ESResNeXt-Tiny", "--model.init_args.audio_pretrained=null"]
    kinds = ("Segmentation", "Detection", "Grounding", "Mixture")
    if data_class in ("ESC50", "UrbanSound8K", "AudioClips"):
        arguments += ["--data.init_args.num_workers=0", "--data.init_args.batch_size=2", "--data.init_args.context_length=16"]
        arguments += ["--data.init_args.sample_rate=8000", "--data.init_args.duration=0.5"]
    elif data_class.endswith(kinds) and not data_class.startswith("ShapesWorld"):
        arguments += ["--data.init_args.num_workers=0", "--data.init_args.batch_size=2"]
    elif data_class in VIDEO_DATA:
        arguments += ["--data.init_args.num_workers=0", "--data.init_args.image_size=32"]
        arguments += ["--data.init_args.batch_size=2", "--data.init_args.eval_batch_size=2"]
    elif data_class == "TimedCaptions":
        arguments += ["--data.init_args.num_workers=0", "--data.init_args.context_length=16"]
        arguments += ["--data.init_args.videos_per_batch=2", "--data.init_args.clips_per_video=2"]
        arguments.append("--data.init_args.eval_batch_size=4")
    elif data_class == "ShapesWorldTimedCaptions":  # 4 long videos: retrieval-augmented batches embed them all
        arguments += ["--data.init_args.image_size=32", "--data.init_args.context_length=16"]
        arguments += ["--data.init_args.train_videos=4", "--data.init_args.videos_per_batch=2"]
        arguments.append("--data.init_args.eval_batch_size=4")
    elif data_class == "ShapesWorldVideo":
        arguments += ["--data.init_args.image_size=32", "--data.init_args.context_length=16"]
        arguments.append("--data.init_args.batch_size=4")
    elif not data_class.startswith("ShapesWorld") and data_class not in (*THREE_D_DATA, "GenerationTargets"):
        arguments += ["--data.init_args.num_workers=0", "--data.init_args.image_size=32", "--data.init_args.batch_size=8"]
    if data_class in ("CocoCaptions", "CsvPairs", "WebDatasetPairs", "MSRVTT", "MSVD", "DiDeMo"):
        arguments.append("--data.init_args.context_length=16")  # the tiny checkpoint's context
    # The stand-in CLIP has 2 layers and a 16-token context: fewer prompt layers and context vectors.
    model = init_parameters(parsed["model"])
    if "prompt_depth" in model:
        arguments.append("--model.init_args.prompt_depth=2")
    if "n_ctx" in model and not parsed["model"]["init_args"].get("ctx_init"):
        arguments.append("--model.init_args.n_ctx=4")
    if "augment_epochs" in model:
        arguments.append("--model.init_args.augment_epochs=1")
    if "cross_num_hidden_layers" in model:  # CLIP4Clip's temporal transformer: the CLIP's first text layers
        arguments.append("--model.init_args.cross_num_hidden_layers=2")
    if model_class == "VideoCLIP":
        arguments.append("--model.init_args.video_layers=1")
        if parsed["model"]["init_args"].get("text_encoder") == "bert":
            # A tiny random BERT in place of bert-base-uncased, over a tokenizer saved offline (ShapesWorld's names
            # whole, any other word spelt in pieces), on the exported features.
            tokenizer = word_tokenizer([*COLORS, *SHAPES])
            tokenizer.save_pretrained(tmp_path / "bert")
            bert = {"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "intermediate_size": 64}  # fmt: skip
            arguments += [
                "--model.init_args.pretrained_text=null", f"--model.init_args.bert_config={json.dumps(bert)}",
                f"--model.init_args.feature_dim={FEATURE_DIM}", f"--data.init_args.tokenizer={tmp_path / 'bert'}",
            ]  # fmt: skip
    if model_class == "ViLD":
        # A micro detector from scratch. ViLD-text: the distilling variants need a region cache built by a trained
        # detector (tests/test_vild.py runs that chain).
        arguments += [
            "--model.init_args.backbone=resnet18", "--model.init_args.backbone_weights=null",
            "--model.init_args.fpn_channels=16", "--model.init_args.head_convs=1", "--model.init_args.head_fcs=1",
            "--model.init_args.head_fc=32", "--model.init_args.min_size=64", "--model.init_args.max_size=64",
            "--model.init_args.anchor_sizes=[8,16,32,64,128]", "--model.init_args.proposals_per_image=20",
            "--model.init_args.proposals_before_nms=50", "--model.init_args.roi_samples_per_image=16",
            "--model.init_args.variant=text", "--data.init_args.region_cache=null",
        ]  # fmt: skip
    elif model_class == "GLIP":
        # A micro GLIP from scratch: a small BERT over a word list in place of bert-base-uncased, no released weights.
        arguments += [
            "--model.init_args.backbone=resnet18", "--model.init_args.channels=32", "--model.init_args.weights=null",
            "--model.init_args.backbone_pretrained=false",
            "--model.init_args.text_encoder=null", "--model.init_args.text_encoder_type=bert",
            "--model.init_args.text_width=32", "--model.init_args.text_layers=1", "--model.init_args.text_heads=2",
            "--model.init_args.blocks=1", "--model.init_args.fusion_depth=1", "--model.init_args.fusion_dim=32",
            "--model.init_args.fusion_heads=2", "--model.init_args.min_size=64", "--model.init_args.max_size=64",
            f"--model.init_args.text_words={json.dumps([*COLORS, *SHAPES])}",  # ShapesWorld's names fit in 256 tokens
        ]  # fmt: skip
    elif parsed["model"].get("init_args", {}).get("backbone", "clip") != "clip":  # LSeg's timm ViT-L/16, ResNet-101
        arguments += ["--model.init_args.backbone=test_vit", "--model.init_args.features=16"]
    return arguments


def subcommand(config: Path) -> str:
    """The subcommand of the config's own usage comment (`# lit-clip test --config configs/<this file>`)."""
    own_path = re.escape(str(config.relative_to(ROOT)))
    match = re.search(rf"lit-clip (fit|validate|test|predict) --config {own_path}", config.read_text())
    assert match, f"{config} has no usage line '# lit-clip <subcommand> --config {config.relative_to(ROOT)} ...'"
    return match.group(1)


@pytest.mark.parametrize("config", METHOD_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_runs_with_fast_dev_run(config, tmp_path, lit_clip_checkpoint, monkeypatch):
    """In this process (the CLI's own entry point, ``lit_clip.cli.main``): a fresh process per config would spend
    most of its time importing torch and Lightning again; the tests below run the command itself."""
    extra = fixture_arguments(config, tmp_path, lit_clip_checkpoint)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-clip"])  # pytest's own arguments are not the CLI's
    main([subcommand(config), "--config", str(config), "--trainer.fast_dev_run=true", *extra])


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_every_preset_composes_with_the_shapes_config(preset, tmp_path):
    result = lit_clip("fit", "--config", BASE, "--config", preset, "--trainer.fast_dev_run=true", cwd=tmp_path)
    assert_ok(result)


def test_python_dash_m_saves_the_resolved_config_and_seed_into_the_run_directory(tmp_path):
    result = lit_clip(
        "fit", "--config", BASE, "--trainer.max_steps=2", "--trainer.limit_val_batches=1",
        "--seed_everything=123", "--trainer.logger.init_args.save_dir=runs", cwd=tmp_path, module=True,
    )  # fmt: skip
    assert_ok(result)
    run_dir = tmp_path / "runs" / "clip-shapes" / "version_0"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["seed_everything"] == 123
    assert saved["model"]["class_path"] == "lit_clip.methods.CLIPPretraining"
    assert list(run_dir.glob("events.out.tfevents.*")), "no TensorBoard events in the run directory"
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_print_config_resolves_interpolation(tmp_path):
    config = tmp_path / "interpolated.yaml"
    config.write_text(yaml.safe_dump({"data": {"init_args": {"context_length": "${model.init_args.warmup_steps}"}}}))
    result = lit_clip("fit", "--config", BASE, "--config", config, "--print_config", cwd=tmp_path)
    assert_ok(result)
    printed = yaml.safe_load(result.stdout)
    assert printed["data"]["init_args"]["context_length"] == printed["model"]["init_args"]["warmup_steps"]


def test_missing_config_file_is_named(tmp_path):
    result = lit_clip("fit", "--config", "configs/clip/nope.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "nope.yaml" in result.stderr


def test_misspelled_key_is_named(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({"model": {"init_args": {"learning_rate": 0.1}}}))
    result = lit_clip("fit", "--config", BASE, "--config", config, cwd=tmp_path)
    assert result.returncode != 0
    assert "learning_rate" in result.stderr


def test_unknown_architecture_in_a_config_lists_the_known_ones(tmp_path):
    result = lit_clip("fit", "--config", BASE, "--model.init_args.architecture=ViT-X-1", cwd=tmp_path)
    assert result.returncode != 0
    assert "ViT-X-1" in result.stderr and "ViT-B-32" in result.stderr
