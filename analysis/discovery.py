"""Unsupervised object discovery with LOST (Siméoni et al. 2021) and its CorLoc score (paper, Table 3).

LOST on the last block's *key* features ``F`` ``(Np, d)`` of one image:

1. patch similarity ``A = F Fᵀ``; a patch's degree is its number of positive correlations;
2. the seed is the patch of lowest degree (objects are smaller than the background);
3. the seed is expanded to those of the ``k`` lowest-degree patches that correlate positively with it;
4. a patch belongs to the object when its summed similarity to the expanded set is positive;
5. the box is the bounding box of the mask's connected component that holds the seed.

CorLoc is the share of images whose box overlaps a ground-truth box with IoU ≥ 0.5.
VOC-style folders (``JPEGImages/`` + ``Annotations/*.xml``) are read directly.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


@dataclass(frozen=True)
class Discovery:
    seed: int  # patch index of the seed
    mask: np.ndarray  # (h, w) bool: the seed's connected component
    box: tuple[int, int, int, int]  # row0, col0, row1, col1 in patches, end exclusive


def lost(keys: np.ndarray, grid: tuple[int, int], k: int = 100) -> Discovery:
    """LOST on one image's patch keys ``(Np, d)`` laid out on ``grid = (h, w)``."""
    similarity = keys @ keys.T
    degree = (similarity >= 0).sum(1)
    seed = int(np.argmin(degree))
    lowest = np.argsort(degree, kind="stable")[: min(k, len(degree))]
    expanded = lowest[similarity[seed, lowest] >= 0]
    mask = (similarity[:, expanded].sum(1) >= 0).reshape(grid)
    components, _ = ndimage.label(mask)
    component = components == components.flat[seed]
    rows, cols = np.nonzero(component)
    return Discovery(seed, component, (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))


def patch_box_to_pixels(box: tuple[int, int, int, int], patch: int, scale: tuple[float, float] = (1.0, 1.0)) -> Box:
    """Patch-unit box → pixel box, then scaled by ``(sx, sy)`` back to the original image."""
    row0, col0, row1, col1 = box
    sx, sy = scale
    return (col0 * patch * sx, row0 * patch * sy, col1 * patch * sx, row1 * patch * sy)


def iou(a: Box, b: Box) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def corloc(predicted: list[Box], truth: list[list[Box]], threshold: float = 0.5) -> float:
    """Share of images whose predicted box has IoU ≥ ``threshold`` with any of their true boxes."""
    if not predicted:
        return float("nan")
    return float(np.mean(hits(predicted, truth, threshold)))


def read_voc_boxes(path: Path) -> list[Box]:
    """Boxes of a VOC annotation (1-based inclusive pixel coordinates → 0-based, end exclusive)."""
    root = ElementTree.parse(path).getroot()
    boxes = []
    for obj in root.iter("object"):
        bnd = obj.find("bndbox")
        x0, y0, x1, y1 = (float(bnd.find(tag).text) for tag in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((x0 - 1, y0 - 1, x1, y1))
    return boxes


def list_voc(root: str | Path, split: str | None = None) -> list[tuple[Path, list[Box]]]:
    """``(image path, true boxes)`` of a VOC-style folder, sorted; ``split`` names ``ImageSets/Main/<split>.txt``."""
    from .images import ImageError

    root = Path(root)
    annotations = root / "Annotations"
    if not annotations.is_dir() or not (root / "JPEGImages").is_dir():
        raise ImageError(f"{root} is not a VOC-style folder (needs JPEGImages/ and Annotations/)")
    if split:
        names = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    else:
        names = sorted(p.stem for p in annotations.glob("*.xml"))
    items = []
    for name in names:
        image = root / "JPEGImages" / f"{name}.jpg"
        boxes = read_voc_boxes(annotations / f"{name}.xml")
        if image.is_file() and boxes:
            items.append((image, boxes))
    if not items:
        raise ImageError(f"{root} holds no annotated images")
    return items


def write_voc_annotation(path: Path, name: str, size: tuple[int, int], boxes: list[Box]) -> None:
    width, height = size
    objects = "".join(
        f"<object><name>object</name><bndbox><xmin>{int(x0) + 1}</xmin><ymin>{int(y0) + 1}</ymin>"
        f"<xmax>{int(x1)}</xmax><ymax>{int(y1)}</ymax></bndbox></object>"
        for x0, y0, x1, y1 in boxes
    )
    path.write_text(f"<annotation><filename>{name}.jpg</filename><size><width>{width}</width>"
                    f"<height>{height}</height><depth>3</depth></size>{objects}</annotation>")


def planted_voc(folder: str | Path, count: int = 16, seed: int = 0, size: int = 320) -> Path:
    """A VOC-style set of real-photo objects pasted on blurred real-photo backgrounds, with their true boxes.

    Deterministic for a given ``count`` and ``seed``; written once and reused.
    """
    from PIL import Image, ImageFilter

    from .images import BUILTIN_PHOTOS

    folder = Path(folder)
    if (folder / ".complete").is_file():
        return folder
    (folder / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle", "grace_hopper", "china", "flower"]
    photos = [Image.fromarray(BUILTIN_PHOTOS[n]()).convert("RGB") for n in names]
    for index in range(count):
        background_photo, object_photo = rng.choice(len(photos), 2, replace=False)
        background = photos[background_photo].resize((size, size)).filter(ImageFilter.GaussianBlur(12))
        side = int(rng.integers(size // 4, size // 2))
        source = photos[object_photo]
        crop_side = min(source.size) // 2
        left = int(rng.integers(0, source.size[0] - crop_side + 1))
        top = int(rng.integers(0, source.size[1] - crop_side + 1))
        obj = source.crop((left, top, left + crop_side, top + crop_side)).resize((side, side))
        x0, y0 = int(rng.integers(0, size - side)), int(rng.integers(0, size - side))
        background.paste(obj, (x0, y0))
        name = f"planted_{index:04d}"
        background.save(folder / "JPEGImages" / f"{name}.jpg", quality=95)
        write_voc_annotation(folder / "Annotations" / f"{name}.xml", name, (size, size), [(x0, y0, x0 + side, y0 + side)])
    (folder / ".complete").write_text("ok")
    return folder


def find_boxes(keys: np.ndarray, grid: tuple[int, int], patch: int, scales: list[tuple[float, float]],
               k: int = 100) -> list[Box]:
    """LOST on each image's patch keys ``(B, Np, d)``; boxes in the original images' pixels."""
    return [patch_box_to_pixels(lost(keys[i], grid, k).box, patch, scales[i]) for i in range(len(keys))]


def hits(predicted: list[Box], truth: list[list[Box]], threshold: float = 0.5) -> np.ndarray:
    """``(B,)`` bool: does each image's box overlap one of its true boxes with IoU ≥ ``threshold``?"""
    return np.array([any(iou(box, gt) >= threshold for gt in boxes) for box, boxes in zip(predicted, truth)], dtype=bool)
