"""Datasets for training: an ImageFolder-layout folder (or a ``.zip`` of one),
the handwritten digits that ship with scikit-learn, and CIFAR-10.

Every dataset here is a :class:`ImageDataset`: a list of samples (a file path
or an in-memory image) with integer labels and the class names. Transforms are
given when a loader is built, so one dataset serves training (augmented) and
validation (not augmented), and the split is by indices.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import TrainingInputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# A zip must not unpack to more than this, nor hold more files, nor compress
# better than this ratio overall (a zip bomb compresses ~1000:1; photos ~1:1).
MAX_UNPACKED_BYTES = 2 * 2**30
MAX_ZIP_MEMBERS = 100_000
MAX_COMPRESSION_RATIO = 100
MAX_IMAGE_PIXELS = 40_000_000


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    """Samples (paths, or PIL images already in memory) with labels in
    ``range(len(classes))``. ``transform`` maps a PIL RGB image to a tensor."""

    samples: list
    labels: list[int]
    classes: list[str]
    transform: Callable | None = None
    skipped: list[str] = field(default_factory=list)   # files that were not readable images
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> Image.Image:
        sample = self.samples[index]
        if isinstance(sample, Image.Image):
            return sample.convert("RGB")
        with Image.open(sample) as img:
            return img.convert("RGB")

    def __getitem__(self, index: int):
        img = self.image(index)
        return (self.transform(img) if self.transform else img), self.labels[index]

    def with_transform(self, transform: Callable | None) -> "ImageDataset":
        return ImageDataset(self.samples, self.labels, self.classes, transform, self.skipped, self.root)

    def subset(self, indices: Sequence[int]) -> "ImageDataset":
        return ImageDataset([self.samples[i] for i in indices], [self.labels[i] for i in indices], self.classes,
                            self.transform, self.skipped, self.root)


# --------------------------------------------------------------------------
# Zips: unpacked only after every member is checked
# --------------------------------------------------------------------------

def safe_extract_zip(path: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Unpack ``path`` into ``destination`` after checking every member:
    refused (``TrainingInputError``) when a name leaves the folder (absolute,
    ``..``, a drive), a member is a link, a zip is nested inside, or the
    sizes look like a zip bomb. Returns ``destination``."""
    destination = Path(destination)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise TrainingInputError(f"{Path(path).name} is not a readable zip file; upload a .zip of one folder "
                                 "per class.") from error
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise TrainingInputError(f"The zip holds {len(members):,} files, more than the {MAX_ZIP_MEMBERS:,} "
                                     "allowed; split the data set.")
        total = sum(m.file_size for m in members)
        packed = sum(m.compress_size for m in members)
        if total > MAX_UNPACKED_BYTES or (total > 2**20 and total > MAX_COMPRESSION_RATIO * max(packed, 1)):
            raise TrainingInputError("The zip was refused because it would unpack to "
                                     f"{total / 2**20:,.0f} MB from {packed / 2**20:,.1f} MB (a zip bomb?); "
                                     "upload the images zipped plainly.")
        for m in members:
            name = PurePosixPath(m.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
                raise TrainingInputError(f"The zip was refused because the entry {m.filename!r} points outside "
                                         "its folder; zip the class folders themselves.")
            mode = m.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise TrainingInputError(f"The zip was refused because {m.filename!r} is a symbolic link; "
                                         "zip the image files themselves.")
            if name.suffix.lower() == ".zip":
                raise TrainingInputError(f"The zip holds another zip ({m.filename}); unpack it and zip the "
                                         "class folders directly.")
        written = 0
        for m in members:
            if m.is_dir():
                continue
            target = destination.joinpath(*PurePosixPath(m.filename.replace("\\", "/")).parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(m) as source, open(target, "wb") as out:
                    # Counted while writing: the sizes in the directory can lie.
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > max(total, 1) * 1.01 + 2**20 or written > MAX_UNPACKED_BYTES:
                            raise TrainingInputError("The zip was refused because it unpacks to more than its "
                                                     "directory says (a zip bomb?); upload the images zipped "
                                                     "plainly.")
                        out.write(chunk)
            except (zipfile.BadZipFile, EOFError) as error:  # a bad CRC, a truncated member
                raise TrainingInputError(f"The zip was refused because {m.filename!r} is damaged ({error}); zip "
                                         "the images again.") from None
            except NotImplementedError:  # before RuntimeError, its base class
                raise TrainingInputError(f"The zip was refused because {m.filename!r} is compressed in a way this "
                                         "app cannot read; zip the images with ordinary (deflate) "
                                         "compression.") from None
            except RuntimeError as error:  # zipfile: "... is encrypted, password required"
                raise TrainingInputError(f"The zip was refused because {m.filename!r} is encrypted; zip the images "
                                         "without a password.") from None
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise TrainingInputError(f"The zip was refused because {m.filename!r} clashes with a file or "
                                         "folder of the same name in it; give each file and folder its own "
                                         "name.") from None
            except OSError as error:  # a name too long for this system, among others
                raise TrainingInputError(f"The zip was refused because {m.filename!r} cannot be unpacked here "
                                         f"({error.strerror or type(error).__name__}); use shorter, plain file "
                                         "names.") from None
    return destination


class UnpackedData:
    """A data path made a folder: a folder as is, a zip unpacked into a
    temporary folder removed on :meth:`cleanup` (or at exit of ``with``)."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        self._tmp = None
        if not path.exists():
            raise TrainingInputError(f"{path} does not exist; give a folder with one sub-folder per class, or a "
                                     ".zip of one.")
        if path.is_file():
            if path.suffix.lower() != ".zip" and not zipfile.is_zipfile(path):
                raise TrainingInputError(f"{path.name} is neither a folder nor a .zip; give a folder with one "
                                         "sub-folder per class, or a .zip of one.")
            self._tmp = tempfile.mkdtemp(prefix="train-data-")
            try:
                safe_extract_zip(path, self._tmp)
            except BaseException:
                self.cleanup()
                raise
            self.folder = _single_top_folder(Path(self._tmp))
        else:
            self.folder = path

    def cleanup(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "UnpackedData":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))


def _single_top_folder(folder: Path) -> Path:
    """A zip of ``data/cat, data/dog`` and a zip of ``cat, dog`` both work:
    descend while the folder holds exactly one folder and no files."""
    while True:
        dirs = _visible_dirs(folder)
        files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        if len(dirs) == 1 and not files and dirs[0].name not in ("train", "val"):
            folder = dirs[0]
        else:
            return folder


# --------------------------------------------------------------------------
# ImageFolder layout
# --------------------------------------------------------------------------

def _readable_image(path: Path) -> bool:
    """Opens and decodes the header; a truncated or fake file is caught later
    by ``verify``. Images with too many pixels are not readable here."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                return False
            img.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def scan_image_folder(folder: str | os.PathLike, classes: Sequence[str] | None = None) -> ImageDataset:
    """One sub-folder per class (sorted by name), images at any depth inside
    it. Files that are not readable images are skipped and listed in
    ``skipped``. With ``classes`` the class list is fixed (a ``val/`` folder
    must use the ``train/`` classes)."""
    folder = Path(folder)
    class_dirs = _visible_dirs(folder)
    names = [d.name for d in class_dirs]
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise TrainingInputError(f"{folder.name}/ has classes that train/ lacks ({', '.join(unknown)}); give "
                                     "both the same sub-folders.")
        names = list(classes)
    samples, labels, skipped = [], [], []
    for label, name in enumerate(names):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if _readable_image(path):
                samples.append(path)
                labels.append(label)
            else:
                skipped.append(str(path.relative_to(folder)))
    return ImageDataset(samples, labels, list(names), skipped=skipped, root=folder)


def check_dataset(data: ImageDataset, where: str = "The data") -> None:
    """The bad inputs that make training meaningless, one sentence each."""
    counts = np.bincount(np.asarray(data.labels, dtype=np.int64), minlength=len(data.classes))
    skipped = f" ({len(data.skipped)} unreadable files skipped)" if data.skipped else ""
    if len(data.classes) == 0:
        raise TrainingInputError(f"{where} has no class folders{skipped}; put each class's images in a "
                                 "sub-folder named after the class.")
    if len(data) == 0:
        raise TrainingInputError(f"{where} holds no readable images{skipped}; add JPEG or PNG files to the "
                                 "class folders.")
    if len(data.classes) < 2:
        raise TrainingInputError(f"{where} has only one class ({data.classes[0]}); a classifier needs at least "
                                 "two class folders.")
    if len(data.classes) > len(data):
        raise TrainingInputError(f"{where} has more classes ({len(data.classes)}) than images ({len(data)}); "
                                 "add at least two images per class.")
    empty = [c for c, n in zip(data.classes, counts) if n == 0]
    if empty:
        raise TrainingInputError(f"{where} has no readable image for the class {empty[0]}{skipped}; add images "
                                 "or remove the folder.")
    single = [c for c, n in zip(data.classes, counts) if n == 1]
    if single:
        raise TrainingInputError(f"The class {single[0]} has only one image, so it cannot appear in both training "
                                 "and validation; add at least one more.")


def load_image_folder(folder: str | os.PathLike) -> tuple[ImageDataset, ImageDataset | None]:
    """``(train, val)`` of a folder in ImageFolder layout: its own ``train/``
    and ``val/`` when it has them (val then uses train's classes), else the
    whole folder and None (split it with :func:`stratified_split`)."""
    folder = Path(folder)
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        train = scan_image_folder(folder / "train")
        check_dataset(train, "The train/ folder")
        val = scan_image_folder(folder / "val", classes=train.classes)
        if len(val) == 0:
            raise TrainingInputError("The val/ folder holds no readable images; add some per class, or remove "
                                     "train/ and val/ to split automatically.")
        val.skipped = train.skipped + val.skipped
        return train, val
    data = scan_image_folder(folder)
    check_dataset(data, f"The folder {folder.name}")
    return data, None


def stratified_split(labels: Sequence[int], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)``: per class, a seeded shuffle, ``round(n *
    val_fraction)`` (at least 1, at most n - 1) to validation."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = min(max(int(round(len(idx) * val_fraction)), 1), len(idx) - 1)
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return sorted(train), sorted(val)


# --------------------------------------------------------------------------
# Built-in data sets
# --------------------------------------------------------------------------

DIGIT_CLASSES = [str(d) for d in range(10)]


def digits_dataset() -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits (8 x 8, 17 grey levels), as
    white-on-black RGB images of 8 x 8 pixels; the transform upsamples them.
    Ships with scikit-learn: no network."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 -> 0..255
    samples = [Image.fromarray(p, mode="L").convert("RGB") for p in pixels]
    return ImageDataset(samples, bunch.target.tolist(), list(DIGIT_CLASSES))


CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar10_datasets(root: str | os.PathLike) -> tuple[ImageDataset, ImageDataset]:
    """CIFAR-10 train and test sets, downloaded into ``root`` the first time
    with torchvision's downloader (needs the network then). The *binary*
    release is read (a label byte and 3,072 pixel bytes per image), not the
    Python release that ``torchvision.datasets.CIFAR10`` unpickles: nothing
    downloaded is unpickled."""
    from torchvision.datasets.utils import download_and_extract_archive

    folder = Path(root) / "cifar-10-batches-bin"
    if not (folder / "test_batch.bin").is_file():
        try:
            download_and_extract_archive(CIFAR10_BINARY_URL, str(root), md5=CIFAR10_BINARY_MD5)
        except Exception as error:  # any download failure becomes one sentence
            raise TrainingInputError(f"CIFAR-10 could not be downloaded into {root} ({type(error).__name__}); "
                                     "connect to the network or use --dataset digits.") from error

    def read(names):
        records = np.concatenate([np.fromfile(folder / n, dtype=np.uint8).reshape(-1, 3073) for n in names])
        images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # [N, 32, 32, RGB]
        return ImageDataset([Image.fromarray(a) for a in images], records[:, 0].astype(int).tolist(),
                            list(CIFAR10_CLASSES))

    return read([f"data_batch_{i}.bin" for i in range(1, 6)]), read(["test_batch.bin"])
