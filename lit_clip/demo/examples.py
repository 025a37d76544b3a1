"""ShapesWorld inputs preloaded on the demo page, so that every tab shows something without an upload.

They are rendered once into a folder (by default ``~/.cache/lit-clip/demo-examples``), deterministically: the same
scenes on every machine, from the test split of world seed 0, so that a ShapesWorld model meets scenes it was not
trained on.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from lit_clip.datamodules.shapesworld import ShapesWorld, class_names

EXAMPLE_PX = 128  # rendered larger than the 64 px models see, to be visible on the page; each tab resizes

# One object per scene, for classification: the class of each.
SINGLE_OBJECTS = ("red circle", "blue square", "green triangle", "yellow star")


def default_folder() -> Path:
    return Path.home() / ".cache" / "lit-clip" / "demo-examples"


def single_object_images(folder: Path) -> list[Path]:
    """``<class>.png`` for each of :data:`SINGLE_OBJECTS`: a scene of that one object."""
    world, names = ShapesWorld(image_size=EXAMPLE_PX), class_names("color_shape")
    paths = []
    for name in SINGLE_OBJECTS:
        path = folder / f"{name.replace(' ', '_')}.png"
        if not path.exists():
            world.single_object_scene("test", 0, names.index(name)).image.save(path)
        paths.append(path)
    return paths


class ExampleScene(NamedTuple):
    path: Path
    caption: str
    names: list[str]  # its objects' colour-shape names ("red circle"), each once, in drawing order


def scene_images(folder: Path, count: int = 3) -> list[ExampleScene]:
    """``scene<k>.png``: scenes of 2-3 objects, each with its caption and its objects' names."""
    world, names = ShapesWorld(image_size=EXAMPLE_PX, min_objects=2, max_objects=3), class_names("color_shape")
    scenes = []
    for index in range(count):
        scene, path = world.scene("test", index), folder / f"scene{index}.png"
        if not path.exists():
            scene.image.save(path)
        objects = list(dict.fromkeys(names[obj.class_index("color_shape")] for obj in scene.objects))
        scenes.append(ExampleScene(path, scene.caption, objects))
    return scenes


def prepare(folder: str | Path | None = None) -> Path:
    """The examples' folder, with the pictures every tab shares written into it."""
    folder = Path(folder) if folder is not None else default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    single_object_images(folder)
    scene_images(folder)
    return folder
