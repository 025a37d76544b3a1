"""The wheel holds every module of the three source folders, installed under one namespace."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# source folder -> where its modules land in the wheel (setup.cfg's package_dir)
INSTALLED_AS = {"lit_clip": "lit_clip", "datamodules": "lit_clip/datamodules", "callbacks": "lit_clip/callbacks"}


def test_the_wheel_holds_every_module_of_lit_clip_datamodules_and_callbacks(tmp_path):
    # Built from a copy, so that the build's egg-info and build/ folders never land in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in INSTALLED_AS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("lit_clip-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())

    expected = {
        f"{installed}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder, installed in INSTALLED_AS.items()
        for path in (ROOT / folder).rglob("*.py")
    }
    assert len(expected) > 40
    assert sorted(expected - in_wheel) == []
    assert "lit_clip/assets/bpe_simple_vocab_16e6.txt.gz" in in_wheel
    # Nothing generic at the top of site-packages: no datamodules/ or callbacks/ of their own.
    assert not [name for name in in_wheel if name.split("/")[0] in ("datamodules", "callbacks")]
