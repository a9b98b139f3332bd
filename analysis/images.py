"""Images: the photos that ship inside packages, user folders, and model preprocessing.

An image *source* is either ``"builtin"`` (real photos shipped with scikit-image,
scikit-learn and matplotlib, so everything runs offline) or a folder path (searched
recursively). Images come back in a deterministic order; :func:`readable_sample` draws a
seeded subset of readable ones (:func:`sample_order` is the order it draws them in).
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MIN_SIDE = 16  # smaller than one patch of any model here: nothing to measure
MAX_PIXELS = 16_000 * 16_000  # larger images are refused before decoding
#: Images whose shorter side exceeds this are decoded at reduced size where the format allows it
#: (JPEG's DCT scaling through Pillow's ``draft``) and then resized to it: the models here read at most
#: 1024 px, so the full-size decode would only cost memory (+300 MB for a 9000² photo).
DECODE_SIDE = 1024


class ImageError(ValueError):
    """An image or image source that cannot be used; the message names it."""


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        array = getattr(skimage.data, name)()
        return array[0] if isinstance(array, tuple) else array

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(name) as handle:
            return np.asarray(Image.open(handle).convert("RGB"))

    return load


#: Real photographs (and micrographs) that ship inside installed packages (no download needed). Only files inside
#: the wheels are used: most of ``skimage.data`` is fetched by pooch on first use, which an offline machine cannot.
#: Test patterns and drawings (checkerboard, logo, phantom, horse, colorwheel, matplotlib's gift-box clip art) are
#: left out: the outliers are measured on natural images.
BUILTIN_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle": _skimage("stereo_motorcycle"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "hubble": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "camera": _skimage("camera"),
    # Added so the ci set's test-time page can hold out 8 images (16 drawn); all grayscale, copied to RGB on load.
    "blurred_clock": _skimage("clock"),  # a wall clock photographed while the camera moved
    "greek_coins": _skimage("coins"),  # coins from Pompeii (Brooklyn Museum)
    "moon_surface": _skimage("moon"),
    "handwriting": _skimage("text"),  # handwritten formulas on paper, photographed at an angle
    "brick_wall": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "floating_cell": _skimage("cell"),  # a cell in saline: quantitative phase micrograph (digital holography)
}

#: The 12 photos the study shipped first, in their original order. The validation page's twins
#: (:mod:`analysis.twins`) and the tests' real-ViT-Ti calibrations were measured on exactly these, and a seeded
#: sample shuffles over every record of its source, so these pages read :data:`ORIGINAL_PHOTOS_SOURCE` rather than
#: ``"builtin"``: photos added later leave their sample unchanged.
ORIGINAL_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "grace_hopper", "china", "flower",
                   "hubble", "retina", "immunohistochemistry", "camera")
ORIGINAL_PHOTOS_SOURCE = "builtin:" + ",".join(ORIGINAL_PHOTOS)


@dataclass
class ImageRecord:
    """One input image: a stable id, how to read it, and its class label when the source has labels."""

    image_id: str
    origin: str  # "builtin:<name>", "digits:<index>" or a file path
    notes: list[str] = field(default_factory=list)
    label: str | None = None
    #: The sha256 of a file's bytes (16 hex digits) as a pass recorded it (``meta["images"]``), so a record read
    #: back from a cache made elsewhere keeps its identity where its origin path does not exist; None: read it.
    digest: str | None = None

    def load(self) -> Image.Image:
        """The image as 8-bit RGB; conversions are recorded in ``notes``."""
        if self.origin.startswith("builtin:"):
            return to_rgb(Image.fromarray(BUILTIN_PHOTOS[self.origin[8:]]()), self.origin, self.notes)
        if self.origin.startswith("digits:"):
            return Image.fromarray(_digit(int(self.origin[7:]))).convert("RGB")
        return read_image_file(Path(self.origin), self.notes)

    def problem(self) -> str | None:
        """Why this image cannot be used (one line naming it), or None: opens and verifies, no full decode."""
        if self.origin.startswith(("builtin:", "digits:")):
            return None
        path = Path(self.origin)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as image:
                    width, height = image.size
                    if width * height <= MAX_PIXELS:
                        image.draft("RGB", (64, 64))  # JPEG decodes at 1/8 scale: cheap, still reads every byte
                        image.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return f"{path}: not a readable image (corrupt or unknown format)"
        if min(width, height) < MIN_SIDE:
            return f"{path}: only {width}x{height} px (need {MIN_SIDE} px a side)"
        if width * height > MAX_PIXELS:
            return f"{path}: too large ({width}x{height} px)"
        return None

    def content_digest(self) -> str | None:
        """The sha256 of a file's bytes (16 hex digits), read from the file when it is there, else the
        :attr:`digest` a pass recorded (a cache made where the file sat elsewhere); None for builtin photos and
        digits, whose names are their identity. A file that cannot be read (it is skipped as unreadable) is
        known by its size and times instead."""
        if self.origin.startswith(("builtin:", "digits:")):
            return None
        stat = self._stat_here()
        if stat is None:
            return self.digest
        try:
            return _file_digest(self.origin, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        except OSError:
            return f"unreadable-{stat.st_size}-{stat.st_mtime_ns}"

    def light_fingerprint(self) -> str:
        """A cheap identity (no bytes read): the builtin or digit name, or a file's id and size (its recorded
        digest where the file is not here)."""
        if self.origin.startswith(("builtin:", "digits:")):
            return self.origin
        stat = self._stat_here()
        return f"file:{self.image_id}:{self.digest}" if stat is None else f"file:{self.image_id}:size-{stat.st_size}"

    def _stat_here(self) -> os.stat_result | None:
        """The file's ``stat`` on this machine, or None where it is not here but a pass recorded its
        :attr:`digest` (a missing file with no recorded digest raises, as before)."""
        try:
            return Path(self.origin).stat()
        except (FileNotFoundError, NotADirectoryError):
            if self.digest is None:
                raise
            return None

    def fingerprint(self) -> str:
        """Identity for cache keys: the builtin or digit name, or for a file its id and the hash of its bytes.

        Not its path: a cache filled on one machine (or checkout, or runner) is read on another where the same
        images sit elsewhere (:func:`analysis.plan.merge_caches`); an edited file gets a new key."""
        digest = self.content_digest()
        return self.origin if digest is None else f"file:{self.image_id}:{digest}"


@functools.lru_cache(maxsize=65536)
def _file_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """sha256 of a file's bytes (16 hex digits), read once per process while its size, times and inode stay the
    same (a page asks for the same image set's key many times; any write changes ``ctime``, which copying tools
    cannot set back)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def to_rgb(image: Image.Image, name: str, notes: list[str]) -> Image.Image:
    """Convert grayscale, 16-bit, palette and alpha images to 8-bit RGB, noting what changed."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = np.zeros_like(array) if high == low else (array - low) / (high - low) * 255.0
        notes.append(f"{name}: {mode} image rescaled to 8 bit and copied to RGB")
        return Image.fromarray(scaled.round().astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"{name}: {mode} image with transparency composited on white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    notes.append(f"{name}: {mode} image converted to RGB")
    return image.convert("RGB")


def read_image_file(path: Path, notes: list[str] | None = None) -> Image.Image:
    """Open and decode ``path`` as 8-bit RGB, as a viewer shows it, or raise :class:`ImageError` naming it.

    The EXIF orientation of phone photos is applied (and noted); images with a shorter side above
    :data:`DECODE_SIDE` are decoded at reduced size where the format allows (and noted).
    """
    notes = notes if notes is not None else []
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"image {path} is a folder, not an image file (pass it as an image folder instead)")
    if not path.is_file():
        raise ImageError(f"image {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageError(f"image {path} is too large ({width}x{height} px); downscale it first")
                if min(width, height) > DECODE_SIDE:
                    scale = DECODE_SIDE / min(width, height)
                    image.draft("RGB", (int(width * scale), int(height * scale)))  # JPEG: decode at 1/2, 1/4, 1/8
                    image.load()
                    if min(image.size) > DECODE_SIDE:
                        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                             Image.Resampling.BICUBIC, reducing_gap=2.0)
                    notes.append(f"{path}: decoded at {image.size[0]}x{image.size[1]} px from {width}x{height} px")
                image.load()
                orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation tag
                if orientation not in (None, 1):
                    image = ImageOps.exif_transpose(image)
                    notes.append(f"{path}: EXIF orientation {orientation} applied (analysed as shown, not as stored)")
                rgb = to_rgb(image, str(path), notes)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image {path} is too large to decode safely; downscale it first") from None
    except UnidentifiedImageError:
        raise ImageError(f"image {path} is not a readable image (corrupt or unknown format)") from None
    except OSError as error:
        raise ImageError(f"image {path} could not be decoded ({error}); the file is probably truncated") from None
    if min(rgb.size) < MIN_SIDE:
        raise ImageError(f"image {path} is only {rgb.size[0]}x{rgb.size[1]} px; need at least {MIN_SIDE} px a side")
    return rgb


def _digit(index: int) -> np.ndarray:
    """scikit-learn's 8x8 handwritten digit ``index`` as a 64x64 uint8 image (white on black)."""
    from sklearn.datasets import load_digits

    pixels = load_digits().images[index]  # values 0..16
    return np.kron(pixels * (255 / 16), np.ones((8, 8))).astype(np.uint8)


def list_labelled_images(source: str | Path, per_class: int | None = None, seed: int = 0) -> list[ImageRecord]:
    """Images with class labels: ``"digits"`` (scikit-learn's handwritten digits, shipped offline) or an
    ImageNet-style folder with one sub-folder per class. ``per_class`` draws a seeded, balanced sample."""
    if str(source) == "digits":
        from sklearn.datasets import load_digits

        labels = load_digits().target
        records = [ImageRecord(f"digit_{i:04d}", f"digits:{i}", label=str(labels[i])) for i in range(len(labels))]
    else:
        records = [r for r in list_images(source) if "/" in r.image_id]
        if not records:
            raise ImageError(f"image folder {source} has no class sub-folders (expected <folder>/<class>/<image>)")
        for record in records:
            record.label = record.image_id.split("/")[0]
    if len({r.label for r in records}) < 2:
        raise ImageError(f"labelled image source {source} has fewer than two classes")
    if per_class is None:
        return records
    rng = random.Random(seed)
    chosen = []
    for label in sorted({r.label for r in records}):
        members = [r for r in records if r.label == label]
        chosen += rng.sample(members, min(per_class, len(members)))
    return sorted(chosen, key=lambda r: r.image_id)


#: Where the ``imagenette`` source lives when not in the clone's ``data/imagenette`` (``make images``).
IMAGENETTE_ENV = "REGISTERS_IMAGENETTE"


def imagenette_folder() -> Path:
    """The ``imagenette`` source: ``$REGISTERS_IMAGENETTE``, else ``data/imagenette`` in the study's clone."""
    return Path(os.environ.get(IMAGENETTE_ENV) or Path(__file__).resolve().parents[1] / "data" / "imagenette")


def imagenette_available() -> bool:
    folder = imagenette_folder()
    return folder.is_dir() and any(folder.iterdir())


def describe_sample(records: list[ImageRecord], source: str | Path | list) -> str:
    """One line naming the images a pass used, without machine paths: ``"8 images from builtin"``,
    ``"20 images of 10 classes from digits"``."""
    if isinstance(source, list):  # records drawn by a page: name them by their common origin
        origins = [r.origin for r in records]
        schemes = {o.split(":")[0] for o in origins if ":" in o and not Path(o.split(":")[0]).is_absolute()}
        if len(schemes) == 1:  # "digits:12", "builtin:chelsea"
            name = schemes.pop()
        elif origins:  # files: the folder that holds them all (the class folders' parent)
            name = Path(os.path.commonpath([str(Path(o).parent) for o in origins])).name
        else:
            name = "?"
    else:
        name = str(source) if str(source) in ("builtin", "imagenette") or str(source).startswith("builtin:") \
            else Path(source).name
        if name.startswith("builtin:") and "," in name:  # several photos named: they are shipped photos all the same
            name = "builtin"
    classes = {r.label for r in records if r.label is not None}
    return f"{len(records)} images" + (f" of {len(classes)} classes" if classes else "") + f" from {name}"


def list_images(source: str | Path) -> list[ImageRecord]:
    """All images of a source in deterministic order.

    ``"builtin"`` gives the photos shipped inside packages, ``"builtin:<name>"`` one of them and
    ``"builtin:<name>,<name>,..."`` those, in the order named;
    ``"imagenette"`` the Imagenette folder (:func:`imagenette_folder`, class sub-folders);
    a folder is searched recursively for common image files, a file path is that one image.
    An empty or missing source is an error.
    """
    if str(source) == "imagenette":
        if not imagenette_available():
            raise ImageError(
                f"the imagenette image source is not on this machine (looked in {imagenette_folder()}): on a "
                f"connected machine run `make images`, or set {IMAGENETTE_ENV} to its folder")
        return list_images(imagenette_folder())
    if str(source) == "builtin":
        return [ImageRecord(name, f"builtin:{name}") for name in BUILTIN_PHOTOS]
    if str(source).startswith("builtin:"):
        names = str(source)[8:].split(",")
        unknown = [name for name in names if name not in BUILTIN_PHOTOS]
        if unknown:
            raise ImageError(f"no shipped photo {', '.join(map(repr, unknown))}; "
                             f"choose from: {', '.join(BUILTIN_PHOTOS)}")
        if len(set(names)) < len(names):  # the same photo twice would weigh double in every statistic
            raise ImageError(f"shipped photo named twice in {source!r}")
        return [ImageRecord(name, f"builtin:{name}") for name in names]
    folder = Path(source).expanduser()
    if not folder.exists():
        raise ImageError(f"image folder {folder} does not exist (use 'builtin' for the shipped photos)")
    if folder.is_file():
        return [ImageRecord(folder.stem, str(folder))]
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [ImageRecord(str(p.relative_to(folder).with_suffix("")), str(p)) for p in files]


def sample_order(records: list[ImageRecord], n: int | None, seed: int = 0) -> list[ImageRecord]:
    """Every record in the seeded order in which a sample of ``n`` draws them (source order for ``n=None``).

    The first ``n`` are the sample; the rest are the replacements, in order, for images of the
    sample that turn out unreadable (:func:`readable_sample`). A folder with class sub-folders (ImageNet layout) is sampled per class:
    the seeded order takes one image of each class in turn, so any ``n`` is balanced to within one image.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        raise ImageError(f"number of images must be a positive integer, got {n!r}")
    if n is None or n >= len(records):
        return list(records)
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    if all("/" in r.image_id for r in records):  # <class>/<image>: round-robin over the classes
        by_class: dict[str, list[int]] = {}
        for index in order:
            by_class.setdefault(records[index].image_id.split("/")[0], []).append(index)
        rounds = max(len(members) for members in by_class.values())
        order = [by_class[label][k] for k in range(rounds) for label in sorted(by_class) if k < len(by_class[label])]
    return [records[i] for i in sorted(order[:n])] + [records[i] for i in order[n:]]


@dataclass
class ImageSample:
    """The images a pass used (source order) and the unreadable ones it skipped (``"path: why"``)."""

    records: list[ImageRecord]
    skipped: list[str]


def source_name(records: list[ImageRecord]) -> str:
    """What a list of records came from, for messages: ``builtin``, ``digits``, or the folder that holds
    all their files."""
    origins = [r.origin for r in records]
    schemes = {o.split(":")[0] if o.startswith(("builtin:", "digits:")) else None for o in origins}
    if len(schemes) == 1 and None not in schemes:  # every record shipped with a package
        return schemes.pop()
    return os.path.commonpath([str(Path(o).parent) for o in origins]) if origins else "the image source"


def readable_sample(records: list[ImageRecord], n: int | None, seed: int = 0) -> ImageSample:
    """A seeded sample of ``n`` *readable* images (all of them for ``n=None``): unreadable files are skipped,
    listed, and replaced by the next image in the seeded order. Fails once, in one line naming the source and
    listing every bad file, when fewer than ``n`` readable images remain (never a smaller sample in silence).

    Each candidate is opened and checked (not decoded in full) before it is used.
    """
    ordered = sample_order(records, n, seed)
    wanted = len(ordered) if n is None else n
    good, skipped = [], []
    for record in ordered:
        if len(good) == wanted:
            break
        problem = record.problem()
        if problem:
            skipped.append(problem)
        else:
            good.append(record)
    if len(ordered) == 1 and skipped:  # one image asked for by name: its own problem, plainly
        raise ImageError(f"image {skipped[0]}")
    if len(good) < wanted or not good:  # every candidate was checked: ``good`` is all the source has
        unreadable = f"; unreadable: {'; '.join(skipped)}" if skipped else ""
        asked = f"all {wanted}" if n is None else str(wanted)
        raise ImageError(f"asked for {asked} images, {source_name(records)} holds {len(good)} readable "
                         f"image(s){unreadable}")
    position = {id(r): i for i, r in enumerate(records)}
    return ImageSample(sorted(good, key=lambda r: position[id(r)]), skipped)


def image_set_key(records: list[ImageRecord], n: int | None = None) -> str:
    """Hash of an image set for cache keys: ``records`` in sample order (:func:`sample_order`), of which a sample
    of ``n`` (None: all) takes the first ``n`` readable ones. The first ``n`` are known by their contents
    (:meth:`ImageRecord.fingerprint`); the replacements after them, used only where one of those is unreadable,
    by id and size (:meth:`ImageRecord.light_fingerprint`), so a large folder is not read through for a sample."""
    count = len(records) if n is None else n
    parts = [r.fingerprint() for r in records[:count]] + [r.light_fingerprint() for r in records[count:]]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def check_resolution_value(resolution: int) -> None:
    """A resolution must be a positive whole number of pixels (checked before any model is built)."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise ImageError(f"resolution must be a positive whole number of pixels, e.g. 224, got {resolution!r}")


def check_resolution(resolution: int, patch: int) -> None:
    if resolution <= 0 or resolution % patch:
        raise ImageError(f"resolution {resolution} px is not a positive multiple of the patch size {patch} px")


def make_transform(model: torch.nn.Module, resolution: int) -> Callable[[Image.Image], torch.Tensor]:
    """timm's eval transform for ``model`` at a square ``resolution``: shorter side resized, centre crop."""
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=model)
    config.update(input_size=(3, resolution, resolution), crop_pct=1.0)
    return create_transform(**config, is_training=False)


def iter_batches(
    records: list[ImageRecord], transform: Callable[[Image.Image], torch.Tensor], batch_size: int
) -> Iterator[tuple[list[ImageRecord], torch.Tensor]]:
    """Yield ``(records, (B, 3, H, W) tensor)`` batches, decoding lazily."""
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        yield chunk, torch.stack([transform(record.load()) for record in chunk])


def display_crop(record: ImageRecord, resolution: int) -> np.ndarray:
    """``(resolution, resolution, 3)`` uint8: the same square centre crop the model sees, for plotting."""
    from PIL import ImageOps

    return np.asarray(ImageOps.fit(record.load(), (resolution, resolution), Image.Resampling.BICUBIC))


def records_of(meta_images: list[dict]) -> list[ImageRecord]:
    """The image records of a cached pass (``Features.meta["images"]``), in pass order."""
    return [ImageRecord(i["image_id"], i["origin"], list(i.get("notes", [])), i.get("label"), i.get("digest"))
            for i in meta_images]


def make_square_transform(model: torch.nn.Module, resolution: int) -> Callable[[Image.Image], torch.Tensor]:
    """The whole image squeezed to ``resolution``² (no crop, so boxes map back by scaling), model-normalised."""
    from timm.data import resolve_data_config
    from torchvision import transforms

    config = resolve_data_config({}, model=model)
    return transforms.Compose([
        transforms.Resize((resolution, resolution), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(config["mean"], config["std"]),
    ])


def pixel_batch(records: list[ImageRecord], model: torch.nn.Module, resolution: int, square: bool = False) -> torch.Tensor:
    """``(B, 3, resolution, resolution)``: the images as ``model`` sees them (its normalisation),
    centre-cropped (or, with ``square``, the whole image squeezed to a square)."""
    transform = (make_square_transform if square else make_transform)(model, resolution)
    return torch.stack([transform(record.load()) for record in records])


def save_imagenette(folder: str | Path, split: str = "val", size: str = "320px") -> Path:
    """(Connected machine) Imagenette — 10 ImageNet classes — through torchvision, laid out as
    ``folder/<class name>/<image>.jpeg``: an image source with labels for every page and the class probe."""
    import shutil
    import tempfile

    from torchvision.datasets import Imagenette

    folder = Path(folder)
    with tempfile.TemporaryDirectory(dir=folder.parent if folder.parent.exists() else None) as download:
        dataset = Imagenette(download, split=split, size=size, download=True)
        for path, label in dataset._samples:
            target = folder / dataset.classes[label][0].replace(" ", "_") / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return folder
