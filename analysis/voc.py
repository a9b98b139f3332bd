"""PASCAL VOC 2007 trainval, the object-discovery benchmark of LOST and of the paper's Table 3.

``make voc`` (``python -m analysis fetch-voc --to DIR``, on a connected machine) downloads it through
torchvision into ``data/voc2007`` (or ``$REGISTERS_VOC``), laid out as torchvision lays it out:
``DIR/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}``. The download goes to a hidden temporary
folder beside ``DIR`` that is renamed to ``DIR`` only once every image of the split is there: ``DIR`` either
holds the whole set or does not exist (an interrupted or failed fetch leaves nothing behind).

:func:`voc_folder` is where the study looks (the inner ``VOC2007`` folder once it is found there),
:func:`voc_available` whether it is complete; :func:`resolve_voc_folder` finds the VOC-style folder at or
under any folder a user names (``DIR``, ``DIR/VOCdevkit`` or the ``VOC2007`` folder itself).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from .images import ImageError

#: Where the VOC 2007 folder lives when not in the clone's ``data/voc2007`` (``make voc``).
VOC_ENV = "REGISTERS_VOC"
YEAR = "2007"
SPLIT = "trainval"
#: Images of each VOC 2007 split (the devkit's ``ImageSets/Main/<split>.txt``): LOST's and the paper's Table 3
#: CorLoc are over all 5011 trainval images. A fetch that finds another count is refused as incomplete.
EXPECTED_IMAGES = {"trainval": 5011, "train": 2501, "val": 2510, "test": 4952}
_YEAR_FOLDER = re.compile(r"^VOC\d{4}$")


class VocFetchError(ImageError):
    """VOC 2007 could not be fetched (offline, a broken download, an unexpected layout); the message says why."""


def default_voc_dir() -> Path:
    """``data/voc2007`` in the study's clone: where ``make voc`` puts the set."""
    return Path(__file__).resolve().parents[1] / "data" / "voc2007"


def _is_voc_style(folder: Path) -> bool:
    return (folder / "JPEGImages").is_dir() and (folder / "Annotations").is_dir()


def resolve_voc_folder(folder: str | Path) -> Path:
    """The VOC-style folder (``JPEGImages/`` and ``Annotations/``) at or under ``folder``.

    ``folder`` itself when it is one; else ``folder/VOC2007``, ``folder/VOCdevkit/VOC2007`` (torchvision's
    layout), or the only ``VOC<year>`` folder under ``folder`` or ``folder/VOCdevkit``. ``folder`` unchanged
    when none is found (:func:`analysis.discovery.list_voc` then says it is not a VOC-style folder).
    """
    folder = Path(folder).expanduser()
    if _is_voc_style(folder):
        return folder
    for parent in (folder, folder / "VOCdevkit"):
        if _is_voc_style(parent / f"VOC{YEAR}"):
            return parent / f"VOC{YEAR}"
        if parent.is_dir():
            years = [p for p in sorted(parent.iterdir()) if _YEAR_FOLDER.match(p.name) and _is_voc_style(p)]
            if len(years) == 1:
                return years[0]
    return folder


def voc_folder() -> Path:
    """The VOC 2007 folder: ``$REGISTERS_VOC``, else ``data/voc2007`` in the clone, resolved to the VOC-style
    folder inside it (``…/VOCdevkit/VOC2007``) when there; the folder as named when it is not (yet)."""
    return resolve_voc_folder(os.environ.get(VOC_ENV) or default_voc_dir())


def split_names(folder: str | Path, split: str = SPLIT) -> list[str]:
    """Image names (``ImageSets/Main/<split>.txt``) of the VOC-style folder at or under ``folder``; [] when absent."""
    listing = resolve_voc_folder(folder) / "ImageSets" / "Main" / f"{split}.txt"
    return listing.read_text().split() if listing.is_file() else []


def missing_files(folder: str | Path, split: str = SPLIT) -> list[str]:
    """The split's images or annotations that are not in the folder (``JPEGImages/<name>.jpg``,
    ``Annotations/<name>.xml``), as paths relative to the VOC-style folder."""
    root = resolve_voc_folder(folder)
    return [f"{kind}/{name}{suffix}" for name in split_names(root, split)
            for kind, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml"))
            if not (root / kind / f"{name}{suffix}").is_file()]


def voc_available(split: str = SPLIT) -> bool:
    """Is VOC 2007 here: does :func:`voc_folder` list the split (``ImageSets/Main/<split>.txt``) with every
    image and annotation it names? (Reads the listing and checks the files exist; parses no annotation.)"""
    folder = voc_folder()
    return _is_voc_style(folder) and bool(split_names(folder, split)) and not missing_files(folder, split)


def _complete(folder: Path, split: str) -> str | None:
    """Why the fetched ``folder`` is not a complete VOC 2007 ``split`` (one line), or None."""
    inner = resolve_voc_folder(folder)
    if not _is_voc_style(inner):
        return f"no VOCdevkit/VOC{YEAR} folder with JPEGImages/ and Annotations/ in {folder}"
    names = split_names(inner, split)
    expected = EXPECTED_IMAGES.get(split)
    if not names or (expected is not None and len(names) != expected):
        return f"ImageSets/Main/{split}.txt lists {len(names)} images, not {expected}"
    missing = missing_files(inner, split)
    if missing:
        return f"{len(missing)} files of the {split} split are missing (first: {missing[0]})"
    return None


def save_voc2007(folder: str | Path, split: str = SPLIT) -> Path:
    """(Connected machine) VOC 2007 ``split`` through ``torchvision.datasets.VOCDetection`` into ``folder``,
    atomically; returns the VOC-style folder inside it (``folder/VOCdevkit/VOC2007``).

    The archive (about 450 MB for trainval) is downloaded and unpacked into a hidden temporary folder beside
    ``folder`` (same file system), checked (every image and annotation the split lists, and the split's known
    size), the archive deleted, and the folder renamed to ``folder``. Any failure or interruption removes the
    temporary folder: ``folder`` is never left half-written. A ``folder`` that already holds the complete split
    is returned as it is; one that holds anything else is refused. Offline, it raises :class:`VocFetchError`
    with one line saying so.
    """
    folder = Path(folder).expanduser().absolute()
    if folder.exists():
        problem = _complete(folder, split)
        if problem is None:
            return resolve_voc_folder(folder)
        raise VocFetchError(f"{folder} exists but is not a complete VOC {YEAR} {split} set ({problem}): remove it "
                            f"or fetch into another folder")
    from torchvision.datasets import VOCDetection

    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    partial.chmod(0o755)  # mkdtemp's 0700 would become the set's own mode after the rename
    try:
        try:
            VOCDetection(str(partial), year=YEAR, image_set=split, download=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError; torchvision: RuntimeError on a bad md5
            reason = " ".join(str(getattr(error, "reason", None) or error).split())  # one line
            raise VocFetchError(
                f"could not download VOC {YEAR} {split} through torchvision ({type(error).__name__}: {reason}); "
                f"this needs a connected machine: run `make voc` there and copy {folder.name} here, or set "
                f"{VOC_ENV} to a folder holding VOCdevkit/VOC{YEAR}") from None
        for archive in partial.glob("*.tar"):
            archive.unlink()  # the unpacked folder is what the study reads
        problem = _complete(partial, split)
        if problem is not None:
            raise VocFetchError(f"the VOC {YEAR} download is incomplete: {problem}")
        try:
            os.rename(partial, folder)  # atomic: folder appears whole or not at all
        except OSError:
            if not (folder.exists() and _complete(folder, split) is None):
                raise
            # another fetch into the same folder finished first: its copy is as good
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already after the rename
    return resolve_voc_folder(folder)
