"""Unsupervised object discovery with LOST (Siméoni et al. 2021) and its CorLoc score (paper, Table 3).

``lost`` follows ``lost``, ``patch_scoring`` and ``detect_box`` in ``object_discovery.py`` of
https://github.com/valeoai/LOST (commit fcedbec), restated here, on the last block's *key* features
``F`` ``(Np, d)`` of one image (prefix tokens dropped, heads concatenated, no normalisation):

1. patch similarity ``A = F Fᵀ``;
2. a patch's degree is its number of *strictly positive* similarities to the *other* patches
   (LOST zeroes the diagonal before counting ``A > 0``);
3. patches are ordered by increasing degree; the seed is the first one;
4. the seed is expanded to those of the first ``k`` patches in that order (the seed among them)
   whose similarity to the seed is strictly positive; the seed's own ``‖f‖² > 0`` keeps it in;
5. a patch belongs to the mask when its summed similarity to the expanded set is strictly positive
   (the full ``A``, diagonal included, is summed here);
6. the box is the bounding box of the mask's 4-connected component (``scipy.ndimage.label``'s
   default cross) that holds the seed, end exclusive (LOST's "+1"); LOST multiplies it by the patch
   size, as ``patch_box_to_pixels`` does. A seed outside the mask (only possible when its key is
   zero) is an error in LOST and here.

Ties. LOST orders patches with ``torch.argsort`` (not stable), so which of several equally low-degree
patches becomes the seed, and which enter the ``k`` potentials, is left unspecified. Here the order
is made deterministic: by degree, then by *weighted* degree (the sum of the positive off-diagonal
similarities, the same inverse-centrality idea measured continuously), then by patch index. Where
degrees do not tie this is LOST's order exactly.

CorLoc is the share of images whose box overlaps a ground-truth box with IoU ≥ 0.5.

The floor. When every pair of keys correlates positively (as on the offline ViT-Ti's last block),
the mask is the whole grid and the box the whole image, whatever the seed: CorLoc then sits at its
floor by construction, with or without any intervention. ``box_area_share``, ``floor_share`` and
``at_floor`` detect this; a CorLoc comparison in which both sides are at their floor says nothing (one side
off its floor is a real difference: the paper's DINOv2 without registers against with them).

VOC-style folders (``JPEGImages/`` + ``Annotations/*.xml``) are read directly.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive

WHOLE_IMAGE_SHARE = 0.95  # a box covering at least this share of the patch grid is a whole-image box
FLOOR_SHARE = 0.5  # LOST is at its floor when at least this share of images give whole-image boxes


@dataclass(frozen=True)
class Discovery:
    seed: int  # patch index of the seed
    mask: np.ndarray  # (h, w) bool: the seed's connected component
    box: tuple[int, int, int, int]  # row0, col0, row1, col1 in patches, end exclusive


def patch_order(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LOST's inverse-degree order of the patches, from their similarity ``(Np, Np)``.

    Returns ``(order, degree)``: ``order`` ``(Np,)`` patch indices, lowest degree first (ties broken
    by weighted degree, then index; see the module's docstring), and ``degree`` ``(Np,)`` int, each
    patch's count of strictly positive similarities to the other patches.
    """
    positive = np.where(similarity > 0, similarity, 0.0)
    np.fill_diagonal(positive, 0.0)
    degree = (positive > 0).sum(1)
    weighted = positive.sum(1)
    return np.lexsort((np.arange(len(degree)), weighted, degree)), degree


def lost(keys: np.ndarray, grid: tuple[int, int], k: int = 100) -> Discovery:
    """LOST on one image's patch keys ``(Np, d)`` laid out row-major on ``grid = (h, w)``.

    ``k``: how many of the lowest-degree patches are candidates for the seed's expansion (LOST's
    ``k_patches``, 100 by default there too). Raises ``ValueError`` when the seed falls outside the
    mask, as LOST does (only when the seed's key is zero).
    """
    keys = np.asarray(keys, dtype=np.float64)
    similarity = keys @ keys.T
    order, _ = patch_order(similarity)
    seed = int(order[0])
    potentials = order[:k]
    expanded = potentials[similarity[seed, potentials] > 0]
    mask = (similarity[expanded].sum(0) > 0).reshape(grid)
    components, _ = ndimage.label(mask)
    label = components.flat[seed]
    if label == 0:
        raise ValueError("LOST: the seed lies outside its own mask (its key is zero)")
    component = components == label
    rows, cols = np.nonzero(component)
    return Discovery(seed, component, (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))


def discover(keys: np.ndarray, grid: tuple[int, int], k: int = 100) -> list[Discovery]:
    """``lost`` on each image's patch keys ``(B, Np, d)``: ``B`` discoveries, in order."""
    return [lost(keys[i], grid, k) for i in range(len(keys))]


def box_area_share(found: Discovery, grid: tuple[int, int] | None = None) -> float:
    """Share of the patch grid ``(h, w)`` (default: the mask's shape) that the box ``found.box`` covers, in [0, 1]."""
    h, w = grid if grid is not None else found.mask.shape
    row0, col0, row1, col1 = found.box
    return (row1 - row0) * (col1 - col0) / (h * w)


def floor_share(discoveries: list[Discovery], grid: tuple[int, int] | None = None,
                whole: float = WHOLE_IMAGE_SHARE) -> float:
    """Share of images whose box is a whole-image box: ``box_area_share ≥ whole`` (0.95 of the grid).

    ``discoveries``: one ``Discovery`` per image (from ``lost``/``discover``). nan when empty.
    """
    if not discoveries:
        return float("nan")
    return float(np.mean([box_area_share(found, grid) >= whole for found in discoveries]))


def at_floor(discoveries: list[Discovery], grid: tuple[int, int] | None = None) -> bool:
    """Is LOST at its floor on these images: do at least ``FLOOR_SHARE`` of them give whole-image boxes?

    At the floor CorLoc is near 0 by construction; a comparison with such a side is inconclusive.
    An empty list counts as at the floor (nothing can be said).
    """
    share = floor_share(discoveries, grid)
    return bool(np.isnan(share) or share >= FLOOR_SHARE)


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


def pixel_boxes(discoveries: list[Discovery], patch: int, scales: list[tuple[float, float]]) -> list[Box]:
    """Each discovery's box in its original image's pixels (``scales[i]``: that image's ``(sx, sy)``)."""
    return [patch_box_to_pixels(found.box, patch, scales[i]) for i, found in enumerate(discoveries)]


def hits(predicted: list[Box], truth: list[list[Box]], threshold: float = 0.5) -> np.ndarray:
    """``(B,)`` bool: does each image's box overlap one of its true boxes with IoU ≥ ``threshold``?"""
    return np.array([any(iou(box, gt) >= threshold for gt in boxes) for box, boxes in zip(predicted, truth)], dtype=bool)


# ---------------------------------------------------------------------------------------------
# The object-discovery page: LOST on a cached pass, and the comparisons it judges

@dataclass(frozen=True)
class AnnotatedSample:
    """Annotated images: records to run, true boxes and original sizes (pixels), in the same order."""

    records: list  # analysis.images.ImageRecord
    truth: list[list[Box]]
    sizes: list[tuple[int, int]]  # (width, height)

    def scales(self, resolution: int) -> list[tuple[float, float]]:
        """Per image ``(sx, sy)`` from the squeezed ``resolution``-px square back to its original pixels."""
        return [(width / resolution, height / resolution) for width, height in self.sizes]

    def subset(self, indices) -> "AnnotatedSample":
        return AnnotatedSample([self.records[i] for i in indices], [self.truth[i] for i in indices],
                               [self.sizes[i] for i in indices])


def annotated_sample(voc_root: str | Path | None, voc_split: str | None, n_images: int, seed: int = 0,
                     cache_dir: str | Path | None = None) -> AnnotatedSample:
    """A seeded sample of ``n_images`` annotated images of a VOC-style folder (None: the planted set, written
    once under the feature cache), in the folder's order."""
    from . import features, images

    folder = voc_root or planted_voc(Path(cache_dir or features.default_cache_dir()) / "planted_voc", n_images, seed)
    items = list_voc(folder, voc_split)
    items = [items[i] for i in sorted(np.random.default_rng(seed).permutation(len(items))[:n_images])]
    return AnnotatedSample([images.ImageRecord(path.stem, str(path)) for path, _ in items],
                           [boxes for _, boxes in items], [images.read_image_file(path).size for path, _ in items])


@dataclass(frozen=True)
class LostResult:
    """LOST's discovery, box and hit per image of one pass (``hits``: ``(B,)`` bool, IoU ≥ 0.5)."""

    spec: str
    weights: str
    random_weights: bool
    num_registers: int
    found: list[Discovery]
    boxes: list[Box]
    hits: np.ndarray

    @property
    def at_floor(self) -> bool:
        return at_floor(self.found)

    def subset(self, indices) -> "LostResult":
        return LostResult(self.spec, self.weights, self.random_weights, self.num_registers,
                          [self.found[i] for i in indices],
                          [self.boxes[i] for i in indices], self.hits[list(indices)])

    def row(self, condition: str | None = None) -> dict:
        """One row of the page's table: CorLoc and the share of whole-image boxes (the floor); ``condition``
        defaults to how the model was trained (with or without registers)."""
        condition = condition or ("trained registers" if self.num_registers else "as released")
        return {"model": self.spec, "condition": condition, "images": len(self.hits),
                "corloc": float(self.hits.mean()) if len(self.hits) else float("nan"),
                "whole_image_boxes": floor_share(self.found)}


def evaluate(feats, sample: AnnotatedSample, k: int = 100) -> LostResult:
    """LOST on the last-block keys of a pass that kept ``"keys"`` over ``sample`` (squeezed to squares), boxes
    in the original images' pixels, hits against the true boxes."""
    prefix = int(feats.meta["num_prefix_tokens"])  # CLS, registers and any test-time register are dropped
    found = discover(np.asarray(feats.arrays["keys"][:, prefix:]), feats.grid, k)
    boxes = pixel_boxes(found, int(feats.meta["patch_size"]), sample.scales(int(feats.meta["resolution"])))
    return LostResult(feats.meta["spec"], feats.provenance.label(), feats.provenance.is_random,
                      int(feats.meta["num_registers"]), found, boxes, hits(boxes, sample.truth))


@dataclass(frozen=True)
class MovedComparison:
    """LOST on the held-out images with the register units moved against as released, paired per image."""

    gain: object  # analysis.stats.Interval: CorLoc moved − as released
    moved_any: bool  # did the move remove any high-norm patch?
    at_floor: bool  # both sides at LOST's floor: the comparison says nothing
    rows: list[dict]


def compare_moved(released: LostResult, high: np.ndarray, moved, sample: AnnotatedSample, cutoff: float,
                  k: int = 100, seed: int = 0) -> MovedComparison:
    """The test-time-register comparison of one model: ``moved`` is its
    :class:`~analysis.test_time.MovedPass` (None: not run, a zero gain on the held-out half that the rule
    reads as "nothing moved"); ``high``: ``(B, Np)`` outlier mask of the released pass; ``cutoff``: its cutoff."""
    from . import findings, probes

    if moved is None:
        _, held_out = probes.split_images(len(released.hits), seed)
        same = released.hits[held_out]
        return MovedComparison(findings.paired_gap(same, same, seed), False, False, [])
    held = released.subset(moved.held_out)
    after = evaluate(moved.moved, sample.subset(moved.held_out), k)
    moved_any = bool(moved.neurons) and bool(  # no unit found: nothing moved, whatever a re-run's rounding says
        (findings.patch_grid(moved.moved, "norm") > cutoff).sum() < high[moved.held_out].sum())
    return MovedComparison(findings.paired_gap(after.hits, held.hits, seed), moved_any,
                           after.at_floor and held.at_floor,
                           [after.row("test-time register (held-out half)"), held.row("as released (held-out half)")])


def results_table(lost: dict[str, "LostResult"], compared: dict[str, MovedComparison]) -> "pd.DataFrame":
    """The page's table: one row per model as released (or trained with registers), then its held-out
    comparison rows where the test-time register was run."""
    import pandas as pd

    rows = []
    for spec, result in lost.items():
        rows += [result.row()] + (compared[spec].rows if spec in compared else [])
    return pd.DataFrame(rows, columns=["model", "condition", "images", "corloc", "whole_image_boxes"])


def with_test_time_register(feats, released: LostResult, cutoff: float, sample: AnnotatedSample, run, k: int = 100,
                            seed: int = 0, enabled: bool = True) -> MovedComparison:
    """:func:`compare_moved` after :func:`analysis.test_time.moved_pass` on the released pass ``feats`` (its
    outliers: patches above ``cutoff``; ``run``: the page's run options, whose batch size the units' choice uses);
    ``enabled`` False compares nothing (the rule then reads "nothing moved")."""
    from . import findings, test_time

    high = findings.patch_grid(feats, "norm") > cutoff
    moved = (test_time.moved_pass(feats, high, run, batch_size=run.batch_size, keep=("keys",)) if enabled
             else None)
    return compare_moved(released, high, moved, sample, cutoff, k, seed)


def register_partners(results: dict[str, LostResult]) -> list[tuple[LostResult, LostResult]]:
    """Pairs ``(without, with trained registers)`` among the results: a ``*_patch14_*`` model and its
    ``*_patch14_reg4_*`` twin (the paper's Table 3)."""
    pairs = []
    for spec, result in results.items():
        partner = spec.replace("_patch14_", "_patch14_reg4_")
        if partner != spec and partner in results:
            pairs.append((result, results[partner]))
    return pairs


def judge_register_pair(plain: LostResult, with_registers: LostResult, seed: int = 0):
    """:func:`analysis.claims.judge_discovery_registers` on the same images, paired per image."""
    from . import claims, findings
    from .models import ModelSpec

    return claims.judge_discovery_registers(
        ModelSpec.parse(plain.spec).name, ModelSpec.parse(with_registers.spec).name,
        plain.random_weights or with_registers.random_weights,
        findings.paired_gap(with_registers.hits, plain.hits, seed), plain.at_floor and with_registers.at_floor)
