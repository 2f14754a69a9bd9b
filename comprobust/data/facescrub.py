"""FaceScrub: a user folder `<root>/FaceScrub/` of `<id>_<n>.jpg` (id 100..487 -> label id - 100).

The JPEGs are decoded once (sorted by file name, 100x100 or 101x101 RGB, cropped to the top-left 100x100 as in
the paper) into `<cache>/facescrub-images.npy` + `facescrub-labels.npy` with a manifest holding their SHA-256
and a fingerprint of the folder (names, sizes, modification times). Later loads memory-map the cache; a cache
whose hash does not match its manifest is a UserError naming the file. When the folder changes the cache is
rebuilt (it is derived data; the user's JPEGs are never written to).

Files with unexpected names, sizes or contents are SKIPPED and listed in one warning (and in the manifest's
`skipped_images`), so one stray file does not stop a 50,000-image dataset; a folder with no usable image is a
UserError.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

import numpy as np

from comprobust.atomic import atomic_write, atomic_write_text, file_sha256
from comprobust.errors import UserError

FIRST_ID, LAST_ID = 100, 487
SIZE = 100
ACCEPTED_SIZES = ((100, 100), (101, 101))
NAME_PATTERN = re.compile(r"^(\d+)_(\d+)\.jpe?g$", re.IGNORECASE)
FORMAT = 1


class DataWarning(UserWarning):
    """Something in a user's data folder was skipped; the message lists what and why."""


def _scan(folder: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """Valid-looking files with their labels, and a list of 'name: reason' for everything else."""
    accepted, skipped = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        match = NAME_PATTERN.match(entry.name)
        if not entry.is_file():
            skipped.append(f"{entry.name}: not a file")
        elif match is None:
            skipped.append(f"{entry.name}: name is not <id>_<n>.jpg")
        elif not FIRST_ID <= int(match.group(1)) <= LAST_ID:
            skipped.append(f"{entry.name}: id {int(match.group(1))} is outside {FIRST_ID}..{LAST_ID}")
        else:
            accepted.append((entry, int(match.group(1)) - FIRST_ID))
    return accepted, skipped


def _fingerprint(files: list[tuple[Path, int]]) -> str:
    digest = hashlib.sha256()
    for path, _ in files:
        stat = path.stat()
        digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _decode(files: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image, UnidentifiedImageError

    images = np.empty((len(files), 3, SIZE, SIZE), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.int64)
    skipped, count = [], 0
    for path, label in files:
        try:
            with Image.open(path) as image:
                if image.size not in ACCEPTED_SIZES:
                    skipped.append(
                        f"{path.name}: size {image.size[0]}x{image.size[1]}, expected 100x100 or 101x101"
                    )
                    continue
                pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            skipped.append(f"{path.name}: cannot be decoded ({err})")
            continue
        images[count] = pixels[:SIZE, :SIZE].transpose(2, 0, 1)
        labels[count] = label
        count += 1
    return images[:count], labels[:count], skipped


def _warn_skipped(skipped: list[str], folder: Path) -> None:
    if skipped:
        shown = "; ".join(skipped[:20]) + (f"; ... and {len(skipped) - 20} more" if len(skipped) > 20 else "")
        warnings.warn(
            f"FaceScrub: skipped {len(skipped)} file(s) in {folder}: {shown}", DataWarning, stacklevel=3
        )


def read_facescrub_folder(root: Path, cache: Path, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 3, 100, 100) images (memory-mapped cache) and int64 labels of `<root>/FaceScrub/`."""
    folder = Path(root) / "FaceScrub"
    how = (
        f"FaceScrub cannot be downloaded automatically{' (--download does not apply)' if download else ''}: "
        f"put the curated images in {folder}/ as <id>_<n>.jpg with id {FIRST_ID}..{LAST_ID} (label = id - "
        f"{FIRST_ID}), 100x100 or 101x101 RGB"
    )
    if not folder.is_dir():
        raise UserError(f"FaceScrub not found: looked for the folder {folder}; {how}")
    files, skipped = _scan(folder)
    if not files:
        detail = f" ({len(skipped)} file(s) with other names, e.g. {skipped[0]})" if skipped else ""
        raise UserError(f"FaceScrub: no <id>_<n>.jpg image in {folder}{detail}; {how}")
    fingerprint = _fingerprint(files)
    manifest_path = cache / "facescrub-manifest.json"
    image_path, label_path = cache / "facescrub-images.npy", cache / "facescrub-labels.npy"
    if manifest_path.exists():
        manifest = _read_manifest(manifest_path)
        if manifest.get("fingerprint") == fingerprint:
            for path in (image_path, label_path):
                _verify(path, manifest, manifest_path)
            images = np.load(image_path, mmap_mode="r")
            labels = np.load(label_path)
            _warn_skipped(skipped + list(manifest.get("skipped_images", [])), folder)
            return images, labels
        warnings.warn(
            f"FaceScrub: {folder} changed since {manifest_path} was written; rebuilding the cache",
            DataWarning,
            stacklevel=2,
        )
    images, labels, bad_images = _decode(files)
    if len(images) == 0:
        raise UserError(
            f"FaceScrub: none of the {len(files)} images in {folder} is usable ({bad_images[0]}); {how}"
        )
    atomic_write(image_path, lambda handle: np.save(handle, images))
    atomic_write(label_path, lambda handle: np.save(handle, labels))
    manifest = {
        "format": FORMAT,
        "source": str(folder.resolve()),
        "fingerprint": fingerprint,
        "count": int(len(images)),
        "files": {path.name: file_sha256(path) for path in (image_path, label_path)},
        "skipped_images": bad_images,
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
    _warn_skipped(skipped + bad_images, folder)
    return np.load(image_path, mmap_mode="r"), labels


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError("unknown format")
        return manifest
    except ValueError as err:
        raise UserError(
            f"FaceScrub cache manifest {path} is unreadable ({err}); delete {path.parent} to rebuild"
        ) from err


def _verify(path: Path, manifest: dict, manifest_path: Path) -> None:
    expected = manifest.get("files", {}).get(path.name)
    if not path.is_file() or expected is None or file_sha256(path) != expected:
        raise UserError(
            f"FaceScrub cache file {path} is missing or does not match the SHA-256 in {manifest_path} "
            f"(corrupt or changed); delete {path.parent} to rebuild it from the JPEGs"
        )
