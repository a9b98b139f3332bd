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

VOC-style folders (``JPEGImages/`` + ``Annotations/*.xml``, optionally ``ImageSets/Main/<split>.txt``) are read
directly, also from a folder above them (torchvision's ``VOCdevkit/VOC2007``; ``make voc`` fetches VOC 2007 trainval,
:mod:`analysis.voc`). True boxes follow LOST's VOC protocol (``extract_gt_VOC`` in LOST's ``datasets.py``): every
object counts, *difficult* and *truncated* ones included (LOST's ``--no_hard`` is off for its published CorLoc).

Table 3. :func:`table3` puts each model's CorLoc (interval over images) beside the published figure for its family
and condition on VOC 2007 trainval (:data:`PUBLISHED_VOC07`: DINO 61.9 from LOST, quoted by the paper; DINOv2
35.3 → 55.4, DeiT-III 11.7 → 27.1, OpenCLIP 38.8 → 37.1 with registers) and lists how this run's setting differs
(:func:`setting_differences`): LOST reads each image at its own size, the page squeezes it to a square; the paper's
own models (not released) read values for DeiT-III and OpenCLIP and add a bias to the Gram matrix. The published
figure is context, never a verdict.
"""

from __future__ import annotations

import re
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


def _flag(obj, tag: str) -> bool:
    """A VOC object's ``<difficult>`` / ``<truncated>`` flag (absent: 0)."""
    node = obj.find(tag)
    return node is not None and (node.text or "").strip() == "1"


def read_voc_boxes(path: Path, exclude_hard: bool = False) -> list[Box]:
    """Boxes of a VOC annotation (1-based inclusive pixel coordinates → 0-based, end exclusive), as LOST's
    ``extract_gt_VOC`` reads them (``datasets.py``).

    Every object counts, *difficult* and *truncated* ones included: LOST's default, with which its published
    CorLoc (61.9 on VOC07 trainval) and the paper's Table 3 were measured. ``exclude_hard`` is LOST's
    ``--no_hard`` option instead: objects flagged truncated or difficult are left out.
    """
    root = ElementTree.parse(path).getroot()
    boxes = []
    for obj in root.iter("object"):
        if exclude_hard and (_flag(obj, "truncated") or _flag(obj, "difficult")):
            continue
        bnd = obj.find("bndbox")
        x0, y0, x1, y1 = (float(bnd.find(tag).text) for tag in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((x0 - 1, y0 - 1, x1, y1))
    return boxes


def list_voc(root: str | Path, split: str | None = None, exclude_hard: bool = False) -> list[tuple[Path, list[Box]]]:
    """``(image path, true boxes)`` of a VOC-style folder, sorted; ``split`` names ``ImageSets/Main/<split>.txt``
    (None: every annotation in the folder).

    ``root`` may be the VOC-style folder itself or a folder above it (``VOCdevkit/VOC2007`` as torchvision lays it
    out, :func:`analysis.voc.resolve_voc_folder`). Images without a true box are left out (with ``exclude_hard``,
    LOST's ``--no_hard``, also those whose every object is difficult or truncated; :func:`read_voc_boxes`).
    """
    from .images import ImageError
    from .voc import resolve_voc_folder

    root = resolve_voc_folder(root)
    annotations = root / "Annotations"
    if not annotations.is_dir() or not (root / "JPEGImages").is_dir():
        raise ImageError(f"{root} is not a VOC-style folder (needs JPEGImages/ and Annotations/)")
    if split:
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise ImageError(f"{root} has no {split!r} split (no ImageSets/Main/{split}.txt)")
        names = listing.read_text().split()
    else:
        names = sorted(p.stem for p in annotations.glob("*.xml"))
    items = []
    for name in names:
        image = root / "JPEGImages" / f"{name}.jpg"
        annotation = annotations / f"{name}.xml"
        boxes = read_voc_boxes(annotation, exclude_hard) if annotation.is_file() else []
        if image.is_file() and boxes:
            items.append((image, boxes))
    if not items:
        raise ImageError(f"{root} holds no annotated images" + (f" in its {split!r} split" if split else ""))
    return items


def voc_dataset(root: str | Path) -> str:
    """Which dataset a VOC-style folder holds: its ``VOC<year>`` name (the folder's own, else the ``<folder>`` tag
    of its first annotation, as the devkit writes it), else the folder's name."""
    from .voc import resolve_voc_folder

    root = resolve_voc_folder(root)
    if re.match(r"^VOC\d{4}$", root.name):
        return root.name
    first = next(iter(sorted((root / "Annotations").glob("*.xml"))), None)
    if first is not None:
        tag = ElementTree.parse(first).getroot().findtext("folder")
        if tag and re.match(r"^VOC\d{4}$", tag.strip()):
            return tag.strip()
    return root.name


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
    """Annotated images: records to run, true boxes and original sizes (pixels), in the same order; and where
    they were drawn from: ``dataset`` (``"VOC2007"``, another ``VOC<year>`` or folder name, or ``"planted"``),
    ``split`` and ``available`` (annotated images there before the draw)."""

    records: list  # analysis.images.ImageRecord
    truth: list[list[Box]]
    sizes: list[tuple[int, int]]  # (width, height)
    dataset: str = "planted"
    split: str | None = None
    available: int | None = None

    def scales(self, resolution: int) -> list[tuple[float, float]]:
        """Per image ``(sx, sy)`` from the squeezed ``resolution``-px square back to its original pixels."""
        return [(width / resolution, height / resolution) for width, height in self.sizes]

    def subset(self, indices) -> "AnnotatedSample":
        return AnnotatedSample([self.records[i] for i in indices], [self.truth[i] for i in indices],
                               [self.sizes[i] for i in indices], self.dataset, self.split, self.available)

    @property
    def is_voc2007(self) -> bool:
        return self.dataset == "VOC2007"

    def describe(self) -> str:
        """The images in words, without machine paths: ``"100 of the 5011 images of VOC2007 trainval"``,
        ``"16 images of the planted set"``."""
        if self.dataset == "planted":
            return f"{len(self.records)} images of the planted set (synthetic, not VOC)"
        where = f"{self.dataset} {self.split}" if self.split else self.dataset
        return f"{len(self.records)} of the {self.available} annotated images of {where}"


def annotated_sample(voc_root: str | Path | None, voc_split: str | None, n_images: int, seed: int = 0,
                     cache_dir: str | Path | None = None) -> AnnotatedSample:
    """A seeded sample of ``n_images`` annotated images of a VOC-style folder (None: the planted set, written
    once under the feature cache), in the folder's order."""
    from . import features, images

    folder = voc_root or planted_voc(Path(cache_dir or features.default_cache_dir()) / "planted_voc", n_images, seed)
    everything = list_voc(folder, voc_split)
    items = [everything[i] for i in sorted(np.random.default_rng(seed).permutation(len(everything))[:n_images])]
    return AnnotatedSample([images.ImageRecord(path.stem, str(path)) for path, _ in items],
                           [boxes for _, boxes in items], [images.read_image_file(path).size for path, _ in items],
                           voc_dataset(folder) if voc_root else "planted", voc_split, len(everything))


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
    resolution: int | None = None  # side of the square each image was squeezed to (pixels)
    patch_size: int | None = None

    @property
    def at_floor(self) -> bool:
        return at_floor(self.found)

    def subset(self, indices) -> "LostResult":
        return LostResult(self.spec, self.weights, self.random_weights, self.num_registers,
                          [self.found[i] for i in indices],
                          [self.boxes[i] for i in indices], self.hits[list(indices)], self.resolution, self.patch_size)

    def row(self, condition: str | None = None) -> dict:
        """One row of the page's table: CorLoc and the share of whole-image boxes (the floor); ``condition``
        defaults to how the model was trained (with or without registers)."""
        condition = condition or ("trained registers" if self.num_registers else "as released")
        return {"model": self.spec, "condition": condition, "images": len(self.hits),
                "corloc": float(self.hits.mean()) if len(self.hits) else float("nan"),
                "whole_image_boxes": floor_share(self.found)}


def patch_keys(feats) -> np.ndarray:
    """The last block's patch keys ``(B, Np, d)`` of a pass that kept ``"keys"`` (CLS, registers and any test-time
    register dropped). Raises ``ValueError`` when the kept keys do not hold exactly the prefix and the grid's patches
    (the prefix count and the grid must agree, or every patch would be read one place off)."""
    keys = feats.arrays["keys"]
    prefix, (h, w) = int(feats.meta["num_prefix_tokens"]), feats.grid
    if keys.shape[1] != prefix + h * w:
        raise ValueError(f"the kept keys hold {keys.shape[1]} tokens, not {prefix} prefix tokens + {h}x{w} patches")
    return np.asarray(keys[:, prefix:])


def _check_order(feats, sample: AnnotatedSample) -> None:
    """The pass's images must be the sample's, in the same order: a box is scored against its own image's truth."""
    ran = [image["image_id"] for image in feats.meta.get("images", [])]
    if ran != [record.image_id for record in sample.records]:
        raise ValueError("the pass's images are not the annotated sample's, in its order: boxes would be scored "
                         "against another image's truth")


def evaluate(feats, sample: AnnotatedSample, k: int = 100, keys: np.ndarray | None = None) -> LostResult:
    """LOST on the last-block keys of a pass that kept ``"keys"`` over ``sample`` (squeezed to squares), boxes
    in the original images' pixels, hits against the true boxes. ``keys``: other patch keys of the same shape
    (the positive control's planted ones) instead of the pass's own."""
    _check_order(feats, sample)
    found = discover(patch_keys(feats) if keys is None else keys, feats.grid, k)
    boxes = pixel_boxes(found, int(feats.meta["patch_size"]), sample.scales(int(feats.meta["resolution"])))
    return LostResult(feats.meta["spec"], feats.provenance.label(), feats.provenance.is_random,
                      int(feats.meta["num_registers"]), found, boxes, hits(boxes, sample.truth),
                      int(feats.meta["resolution"]), int(feats.meta["patch_size"]))


def object_patches(box: Box, scale: tuple[float, float], patch: int, grid: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` bool: the patches a true ``box`` (original pixels) covers once the image is squeezed to the grid
    (``scale``: original pixels per squeezed pixel, as :meth:`AnnotatedSample.scales`); at least one patch."""
    x0, y0, x1, y1 = box
    sx, sy = scale
    h, w = grid
    row0, col0 = min(int(y0 / sy // patch), h - 1), min(int(x0 / sx // patch), w - 1)
    row1, col1 = max(int(np.ceil(y1 / sy / patch)), row0 + 1), max(int(np.ceil(x1 / sx / patch)), col0 + 1)
    mask = np.zeros(grid, dtype=bool)
    mask[row0:min(row1, h), col0:min(col1, w)] = True
    return mask


def plant_object_keys(keys: np.ndarray, sample: AnnotatedSample, resolution: int, patch: int,
                      grid: tuple[int, int], seed: int = 0) -> np.ndarray:
    """The positive control's keys: a copy of the real patch keys ``(B, Np, d)`` in which the patches of each
    image's largest true box get keys that point away from the background's mean key (plus noise of a tenth of
    its length), so the keys separate that object from the background — the case LOST was built for."""
    rng = np.random.default_rng(seed)
    planted = np.array(keys, dtype=np.float64, copy=True)
    scales = sample.scales(resolution)
    for i, boxes in enumerate(sample.truth):
        largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        inside = object_patches(largest, scales[i], patch, grid).reshape(-1)
        background = planted[i, ~inside].mean(0) if (~inside).any() else planted[i].mean(0)
        length = np.linalg.norm(background) or 1.0
        noise = rng.normal(scale=0.1 * length / np.sqrt(keys.shape[-1]), size=(int(inside.sum()), keys.shape[-1]))
        planted[i, inside] = -background + noise
    return planted


def positive_control(feats, sample: AnnotatedSample, k: int = 100, seed: int = 0) -> LostResult:
    """LOST on this pass with each image's object planted in its keys (:func:`plant_object_keys`): a CorLoc near
    100 % shows that the study's LOST, box mapping and scoring find an object wherever the keys separate it, so a
    CorLoc at the floor on the real keys is the model's, not the code's."""
    planted = plant_object_keys(patch_keys(feats), sample, int(feats.meta["resolution"]),
                                int(feats.meta["patch_size"]), feats.grid, seed)
    return evaluate(feats, sample, k, keys=planted)


#: The positive control passes when LOST boxes at least this share of the planted objects.
CONTROL_CORLOC = 0.9


def positive_control_sentence(control: LostResult, model: str) -> str:
    """What the positive control shows, in one sentence (``model``: the short name of the pass it planted in)."""
    hit, total = int(control.hits.sum()), len(control.hits)
    if not total:
        return "No positive control: no annotated image."
    share = f"{hit} of {total} objects (CorLoc {hit / total:.0%})"
    if hit / total >= CONTROL_CORLOC:
        return (f"Positive control: with each image's largest object planted in the keys of {model}'s pass, this "
                f"LOST boxes {share}; so where a CorLoc above sits at its floor, it is the model's keys, not LOST, "
                "the box mapping or the scoring (the same pass, checked to hold the sample's images in order)")
    return (f"Positive control FAILED: with each image's largest object planted in the keys of {model}'s pass, this "
            f"LOST boxes only {share} (at least {CONTROL_CORLOC:.0%} expected): LOST, the box mapping or the scoring, "
            "not only the model, may be at fault")


TEST_TIME_CONDITION = "test-time register (held-out half)"


@dataclass(frozen=True)
class MovedComparison:
    """LOST on the held-out images with the register units moved against as released, paired per image."""

    gain: object  # analysis.stats.Interval: CorLoc moved − as released
    moved_any: bool  # did the move remove any high-norm patch?
    at_floor: bool  # both sides at LOST's floor: the comparison says nothing
    rows: list[dict]
    results: tuple = ()  # the LostResults behind ``rows``, in the same order (held-out half: moved, as released)


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
                           [after.row(TEST_TIME_CONDITION), held.row("as released (held-out half)")], (after, held))


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


# ---------------------------------------------------------------------------------------------
# The paper's Table 3: the published CorLoc on VOC 2007 beside the measured one, with the differences of setting

#: LOST's VOC 2007 protocol (valeoai/LOST at fcedbec: README "PASCAL-VOC", ``main_lost.py``, ``datasets.py``):
#: VOC07 *trainval*, all of its images; every object a true box (difficult and truncated ones too: ``--no_hard``
#: is off by default); each image at its own size, normalised and zero-padded right and bottom to a multiple of
#: the patch size; keys of the last block, CLS dropped, heads concatenated; ``k_patches`` = 100; a hit is IoU ≥ 0.5
#: with any true box.
PUBLISHED_SPLIT = "trainval"
PUBLISHED_IMAGES = 5011
PUBLISHED_K = 100


@dataclass(frozen=True)
class Published:
    """A published LOST CorLoc on VOC 2007 trainval, and how it was measured."""

    corloc: float  # share of images, e.g. 0.619
    model: str  # what it was measured on, in words
    source: str
    timm: str | None = None  # the same weights under their timm name, where they are released
    features: str = "keys"  # which last-block features LOST read
    gram_bias: bool = False  # a bias added to the Gram matrix of the features (value not published)


_DARCET = "Darcet et al. 2024, Table 3"
_LOST = "Siméoni et al. 2021 (LOST)"
#: The paper's own models (Sec. 3.1, none released): "values for DeiT and OpenCLIP, and for DINOv2, we use keys
#: [...] we manually add a bias to the gram matrix of features" (Sec. 3.3). DINO is LOST's own figure, which the
#: paper quotes (Sec. 3.3); LOST's README table adds its other DINO architectures (same protocol).
PUBLISHED_VOC07: dict[tuple[str, bool], Published] = {
    ("dino", False): Published(0.619, "DINO ViT-S/16", f"{_LOST}; quoted in Darcet et al. 2024, Sec. 3.3",
                               "vit_small_patch16_224.dino"),
    ("dinov2", False): Published(0.353, "the paper's DINOv2 ViT-L/14 trained on ImageNet-22k", _DARCET, None,
                                 "keys", True),
    ("dinov2", True): Published(0.554, "the paper's DINOv2 ViT-L/14 +reg4 trained on ImageNet-22k", _DARCET, None,
                                "keys", True),
    ("deit3", False): Published(0.117, "the paper's DeiT-III ViT-B/16 trained on ImageNet-22k", _DARCET, None,
                                "values", True),
    ("deit3", True): Published(0.271, "the paper's DeiT-III ViT-B/16 +reg4 trained on ImageNet-22k", _DARCET, None,
                               "values", True),
    ("openclip", False): Published(0.388, "the paper's OpenCLIP ViT-B/16 trained on licensed Shutterstock data",
                                   _DARCET, None, "values", True),
    ("openclip", True): Published(0.371, "the paper's OpenCLIP ViT-B/16 +reg4 trained on licensed Shutterstock data",
                                  _DARCET, None, "values", True),
}
#: LOST's README table (VOC07 trainval) for its other DINO ViTs.
LOST_DINO_VOC07: dict[str, Published] = {
    "vit_small_patch16_224.dino": PUBLISHED_VOC07[("dino", False)],
    "vit_small_patch8_224.dino": Published(0.555, "DINO ViT-S/8", f"{_LOST}, README", "vit_small_patch8_224.dino"),
    "vit_base_patch16_224.dino": Published(0.601, "DINO ViT-B/16", f"{_LOST}, README", "vit_base_patch16_224.dino"),
}


def paper_family(spec: str) -> tuple[str, bool] | None:
    """``(family, with registers)`` of a timm name for Table 3: ``"dino"``, ``"dinov2"``, ``"deit3"`` or
    ``"openclip"`` (by :func:`analysis.models.family_of`, else by the name: ``deit3_*``, ``*_dinov2*``, ``*.dino``,
    a ``*_clip_*`` model not from OpenAI); registers when the name has ``_reg``. None for any other model."""
    from .models import ModelSpec, family_of

    name = ModelSpec.parse(spec).name
    arch, _, tag = name.partition(".")
    registers = "_reg" in arch
    family = family_of(name)
    if family == "dinov2-reg4":
        return "dinov2", True
    if family in ("dino", "dinov2", "deit3", "openclip"):
        return family, registers
    if arch.startswith("deit3_"):
        return "deit3", registers
    if "_dinov2" in arch:
        return "dinov2", registers
    if tag == "dino":
        return "dino", registers
    if "_clip_" in arch and tag and not tag.startswith("openai"):
        return "openclip", registers
    return None


def published_corloc(spec: str, condition: str | None = None) -> Published | None:
    """The published LOST CorLoc on VOC 2007 trainval for ``spec``'s family and condition (with registers when the
    name says so), or None where none is published: another family, a random-init control, or a test-time register
    (``condition`` :data:`TEST_TIME_CONDITION`). A DINO ViT that LOST reports gets its own figure."""
    from .models import ModelSpec

    parsed = ModelSpec.parse(spec)
    family = paper_family(spec)
    if parsed.random or family is None or (condition or "").startswith("test-time"):
        return None
    if family[0] == "dino" and parsed.name in LOST_DINO_VOC07:
        return LOST_DINO_VOC07[parsed.name]
    return PUBLISHED_VOC07.get(family)


def _patch_of(spec: str) -> int | None:
    from .models import ModelSpec

    match = re.search(r"patch(\d+)", ModelSpec.parse(spec).name)
    return int(match.group(1)) if match else None


def setting_differences(spec: str, sample: AnnotatedSample, resolution: int | None, k: int = PUBLISHED_K,
                        images: int | None = None, condition: str | None = None,
                        patch_size: int | None = None) -> list[str]:
    """How this run's setting differs from the published one for ``spec`` (one phrase each, "here (published:
    there)"): the images (dataset, split, a sample of them), the input (squeezed to a ``resolution``-px square
    instead of the image at its own size), ``k``, and against :func:`published_corloc`'s figure the model's
    weights, which features LOST read and the paper's Gram-matrix bias. ``images``: the row's image count
    (default: the sample's). The true boxes follow LOST (every object, difficult and truncated ones too), so they
    are no difference."""
    from .models import ModelSpec

    n = len(sample.records) if images is None else images
    differences = []
    if not sample.is_voc2007:
        what = ("the planted set (synthetic objects on blurred photos)" if sample.dataset == "planted"
                else sample.dataset)
        differences.append(f"images from {what} (published: VOC 2007 {PUBLISHED_SPLIT})")
    else:
        if sample.split != PUBLISHED_SPLIT:
            differences.append(f"the {sample.split or 'whole-folder'} split (published: {PUBLISHED_SPLIT})")
        if n < PUBLISHED_IMAGES:
            drawn, available = len(sample.records), sample.available or len(sample.records)
            base = (f"a seeded sample of {drawn} of the {available} images" if drawn < available
                    else f"all {available} images of this folder's {sample.split or 'annotations'}")
            differences.append(f"{n} images: " + (f"the held-out half of {base}" if n < drawn else base)
                               + f" (published: all {PUBLISHED_IMAGES})")
    patch = patch_size or _patch_of(spec)
    own = ""
    if patch and sample.sizes:
        width, height = (int(np.median([size[i] for size in sample.sizes])) for i in (0, 1))
        own = (f"; the median image here, {width}×{height} px, gives {-(-width // patch)}×{-(-height // patch)} "
               f"patches that way")
    square = f"{resolution}×{resolution} px" if resolution else "a square"
    grid = f", a {resolution // patch}×{resolution // patch} patch grid" if patch and resolution else ""
    differences.append(f"each image squeezed to {square}{grid} (published: the image at its own size, zero-padded "
                       f"to a multiple of the patch size{own})")
    if k != PUBLISHED_K:
        differences.append(f"k = {k} candidate patches (published: {PUBLISHED_K})")
    published = published_corloc(spec, condition)
    if published is not None:
        if published.timm != ModelSpec.parse(spec).name:
            differences.append(f"weights {ModelSpec.parse(spec).name} (published: {published.model})")
        if published.features != "keys":
            differences.append(f"LOST on the last block's keys (published: its {published.features})")
        if published.gram_bias:
            differences.append("no bias added to the Gram matrix (published: a bias, its value not given)")
    return differences


def corloc_interval(hits_per_image: np.ndarray, seed: int = 0):
    """CorLoc (the share of hits, ``(B,)`` bool) with its bootstrap interval over images
    (:func:`analysis.stats.image_bootstrap`; fewer than 8 images: no interval)."""
    from .stats import image_bootstrap

    return image_bootstrap({"hit": np.asarray(hits_per_image, dtype=float)}, lambda c: float(np.mean(c["hit"])), seed)


TABLE3_COLUMNS = ["model", "condition", "images", "corloc", "corloc_low", "corloc_high", "published_corloc",
                  "published_model", "published_source", "comparison", "differences"]
#: The columns the page shows (the differences follow as a list, :func:`differences_markdown`).
TABLE3_SHOWN = ["model", "condition", "images", "corloc", "corloc_low", "corloc_high", "published_corloc",
                "comparison"]


def table3(lost: dict[str, LostResult], compared: dict[str, MovedComparison] | None, sample: AnnotatedSample,
           resolution: int | None = None, k: int = PUBLISHED_K, seed: int = 0) -> "pd.DataFrame":
    """The paper's Table 3 beside this run: the rows of :func:`results_table` (each model, and its held-out
    test-time comparison where run) with CorLoc's interval over images, the published CorLoc for the same family
    and condition (:func:`published_corloc`; NaN, shown "–", where none is published), and the differences of
    setting (:func:`setting_differences`, joined by "; ").

    Only on VOC 2007: on any other images ``published_corloc`` is NaN and ``comparison`` says "not comparable".
    A published figure is context for the measured one, not a verdict (the claims are judged in
    :mod:`analysis.claims`). ``resolution``: the squeeze, where a result does not carry it.
    """
    import pandas as pd

    rows = []
    for spec, result in lost.items():
        extra = compared.get(spec) if compared else None
        for row_result, row in [(result, result.row())] + list(zip(extra.results, extra.rows) if extra else []):
            interval = corloc_interval(row_result.hits, seed)
            differences = setting_differences(spec, sample, row_result.resolution or resolution, k,
                                              len(row_result.hits), row["condition"], row_result.patch_size)
            published = published_corloc(spec, row["condition"]) if sample.is_voc2007 else None
            if not sample.is_voc2007:
                what = "the planted set" if sample.dataset == "planted" else sample.dataset
                comparison = f"not comparable: {what} is not VOC 2007"
            elif published is None:
                comparison = "no published figure for this model and condition"
            else:
                comparison = (f"{interval.text('.1%')} here, {published.corloc:.1%} published; "
                              f"{len(differences)} differences of setting (context, not a verdict)")
            rows.append({**{key: row[key] for key in ("model", "condition", "images", "corloc")},
                         "corloc_low": interval.low, "corloc_high": interval.high,
                         "published_corloc": published.corloc if published else float("nan"),
                         "published_model": published.model if published else None,
                         "published_source": published.source if published else None,
                         "comparison": comparison, "differences": "; ".join(differences)})
    return pd.DataFrame(rows, columns=TABLE3_COLUMNS).astype({"published_corloc": float})


def published_table() -> "pd.DataFrame":
    """Every published VOC 2007 CorLoc the page compares against: family, condition, CorLoc, model, source."""
    import pandas as pd

    rows = [{"family": family, "condition": "trained registers" if registers else "as released",
             "published_corloc": value.corloc, "published_model": value.model, "published_source": value.source}
            for (family, registers), value in PUBLISHED_VOC07.items()]
    rows += [{"family": "dino", "condition": "as released", "published_corloc": value.corloc,
              "published_model": value.model, "published_source": value.source}
             for name, value in LOST_DINO_VOC07.items() if name != "vit_small_patch16_224.dino"]
    return pd.DataFrame(rows)


def differences_markdown(table: "pd.DataFrame") -> str:
    """The differences of setting of a :func:`table3`, one Markdown bullet per row: ``- **DINOv2 ViT-S/14** (as
    released), published 35.3 % on the paper's DINOv2 ViT-L/14 [...] (Darcet et al. 2024, Table 3): a; b; c``."""
    from .plots import short_name

    lines = []
    for row in table.itertuples():
        published = (f", published {row.published_corloc:.1%} on {row.published_model} ({row.published_source})"
                     if row.published_model and not np.isnan(row.published_corloc) else "")
        lines.append(f"- **{short_name(row.model)}** ({row.condition}){published}: {row.differences}")
    return "\n".join(lines) if lines else "- no model ran"
