"""The generated elemental sets: each split under Identity and the six elementals, written once.

Layout of an output folder::

    manifest.json              dataset, seed, split sizes, per split the clean source's count and SHA-256,
                               and per file: split, corruption, count, shape, seed, sha256
    train-labels.npy           int64 (N,)
    train-Identity.npy         uint8 (N, C, H, W), one per (split, corruption); np.load(mmap_mode="r")
    ...

Noise is the engine's reproducible draw for (seed, corruption, image position in the split): a fixed noise
draw per image, as the paper's ERM trains on. Every file is written atomically and entered in the manifest
right after; a killed generation leaves only complete files, and a re-run generates what the manifest lacks. A
re-run of a finished request is a no-op; a file whose SHA-256 does not match the manifest is a UserError
naming it (never regenerated over); a folder holding another dataset's or seed's sets is a UserError too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from comprobust.atomic import atomic_open, atomic_write, atomic_write_text, file_sha256
from comprobust.corruptions import ELEMENTALS, composition_name, corrupt_batch
from comprobust.data.augment import single_threaded
from comprobust.data.dataset import ImageSplit, LoadedDataset
from comprobust.data.normalisation import split_digest
from comprobust.errors import UserError

log = logging.getLogger(__name__)

ELEMENTAL_SETS: tuple[str, ...] = ("Identity",) + ELEMENTALS
"""The training domains of the paper's monolithic methods: Identity and the six elementals."""
GENERATION_SEED = 1234
"""Default noise seed of the generated sets (the reference's `np.random.seed(1234)`)."""
MANIFEST = "manifest.json"
FORMAT = 1


def corrupted_chunks(
    split: ImageSplit, corruption: str, seed: int, chunk_size: int = 2048
) -> Iterator[torch.Tensor]:
    """The split's images under `corruption` as uint8 chunks; noise fixed by (seed, corruption, position)."""
    for start in range(0, len(split), chunk_size):
        block = split.images[start : start + chunk_size]
        with single_threaded():
            chunk = corrupt_batch(block, corruption, seed=seed, indices=np.arange(start, start + len(block)))
        yield chunk


def materialise(
    split: ImageSplit, corruptions: Sequence[str], seed: int = GENERATION_SEED
) -> list[np.ndarray]:
    """In-memory equivalent of the generated files: one uint8 array per corruption."""
    return [
        torch.cat(list(corrupted_chunks(split, name, seed))).numpy() if len(split) else split.images.numpy()
        for name in corruptions
    ]


def default_out_dir(data: LoadedDataset, seed: int = GENERATION_SEED) -> Path:
    """Where `data prepare` writes by default: `<root>/comprobust-cache/<dataset>/elementals-<tag>`.

    The tag hashes the three splits' contents and the seed, so different split sizes or seeds never collide.
    """
    from comprobust.data.sources import cache_dir

    digest = hashlib.sha256(str(int(seed)).encode())
    for split in ("train", "valid", "test"):
        digest.update(split_digest(data.split(split).images, data.split(split).labels).encode())
    return cache_dir(data.root, data.name) / f"elementals-{digest.hexdigest()[:12]}"


def prepare_elemental_sets(
    data: LoadedDataset,
    out_dir: str | Path,
    splits: Sequence[str] = ("train", "valid"),
    seed: int = GENERATION_SEED,
    corruptions: Sequence[str] = ELEMENTAL_SETS,
    chunk_size: int = 2048,
) -> Path:
    """Write each split under each corruption to `out_dir` (idempotent, atomic); returns the manifest path.

    When a W&B run is active the folder is logged as a `dataset` artifact by reference.
    """
    names = [composition_name(c) for c in corruptions]
    for split in splits:
        data.split(split)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    with _locked(out):
        _remove_stray_temporaries(out)
        sources = {
            s: {
                "count": len(data.split(s)),
                "sha256": split_digest(data.split(s).images, data.split(s).labels),
            }
            for s in splits
        }
        manifest = _read_manifest(manifest_path) if manifest_path.exists() else None
        if manifest is None:
            manifest = {
                "format": FORMAT,
                "dataset": data.name,
                "seed": int(seed),
                "split_sizes": data.split_sizes,
                "image_shape": list(data.spec.image_shape),
                "sources": {},
                "files": {},
            }
        _check_request(manifest, manifest_path, data.name, seed, sources)
        manifest["sources"].update(sources)
        for entry in manifest["files"].values():  # everything already listed must still be intact
            _verify_file(out / entry["file"], entry, manifest_path)
        wrote = False
        for split in splits:
            image_split = data.split(split)
            wanted = [(f"{split}-labels.npy", None)] + [(f"{split}-{name}.npy", name) for name in names]
            for filename, corruption in wanted:
                if filename in manifest["files"]:
                    continue
                path = out / filename
                if corruption is None:
                    labels = image_split.labels.numpy().astype(np.int64)
                    atomic_write(path, lambda handle, labels=labels: np.save(handle, labels))
                    shape = list(labels.shape)
                else:
                    shape = [len(image_split), *data.spec.image_shape]
                    _write_streamed(path, shape, corrupted_chunks(image_split, corruption, seed, chunk_size))
                manifest["files"][filename] = {
                    "file": filename,
                    "split": split,
                    "corruption": corruption,
                    "count": len(image_split),
                    "shape": shape,
                    "seed": int(seed),
                    "sha256": file_sha256(path),
                }
                atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
                wrote = True
                log.info("wrote %s (%d images)", path, len(image_split))
        if not wrote:
            log.info("elemental sets in %s are complete; nothing to do", out)
    log_dataset_artifact(manifest_path)
    return manifest_path


@dataclasses.dataclass
class ElementalSets:
    """Generated arrays of one split: `arrays[k]` is the split under `corruptions[k]` (memory-mapped)."""

    corruptions: tuple[str, ...]
    arrays: list[np.ndarray]
    labels: np.ndarray
    seed: int
    manifest_path: Path


def load_elemental_sets(
    out_dir: str | Path,
    data: Optional[LoadedDataset] = None,
    split: str = "train",
    corruptions: Sequence[str] = ELEMENTAL_SETS,
    verify: bool = True,
) -> ElementalSets:
    """Memory-map the generated `split` under `corruptions`; checks hashes (and, given `data`, the source)."""
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    if not manifest_path.exists():
        raise UserError(
            f"no generated elemental sets in {out} ({manifest_path} is missing); create them with "
            "`python launch.py data prepare --dataset NAME --root DIR --out " + str(out) + "`"
        )
    manifest = _read_manifest(manifest_path)
    names = tuple(composition_name(c) for c in corruptions)
    if data is not None:
        source = manifest["sources"].get(split, {})
        expected = split_digest(data.split(split).images, data.split(split).labels)
        if manifest.get("dataset") != data.name or source.get("sha256") != expected:
            raise UserError(
                f"the elemental sets in {out} were generated from another {split} split (dataset "
                f"{manifest.get('dataset')}, {source.get('count')} images) than the one loaded ({data.name}, "
                f"{len(data.split(split))} images, split sizes {data.split_sizes}); prepare a new folder "
                "with `launch.py data prepare --out DIR` using the same split sizes"
            )
    arrays = []
    for name in ("labels",) + names:
        entry = manifest["files"].get(f"{split}-{name}.npy")
        if entry is None:
            raise UserError(
                f"{out} has no generated {split} set for {name} (see {manifest_path}); run "
                "`python launch.py data prepare` with that split and corruption"
            )
        path = out / entry["file"]
        if verify:
            _verify_file(path, entry, manifest_path)
        arrays.append(np.load(path, mmap_mode="r") if name != "labels" else np.load(path))
    return ElementalSets(names, arrays[1:], np.asarray(arrays[0]), int(manifest["seed"]), manifest_path)


def log_dataset_artifact(manifest_path: Path):
    """Log the generated folder as a W&B `dataset` artifact (manifest by value, arrays by reference).

    Does nothing unless a W&B run is active in this process; returns the artifact or None.
    """
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is None:
        return None
    manifest = _read_manifest(manifest_path)
    artifact = wandb.Artifact(
        name=f"elementals-{manifest['dataset']}",
        type="dataset",
        description=f"{manifest['dataset']} under Identity and the six elementals (seed {manifest['seed']})",
        metadata={key: manifest[key] for key in ("dataset", "seed", "split_sizes", "sources")},
    )
    artifact.add_file(str(manifest_path), name=MANIFEST)
    for entry in manifest["files"].values():
        path = (manifest_path.parent / entry["file"]).resolve()
        artifact.add_reference(f"file://{path}", name=entry["file"], checksum=False)
    run.log_artifact(artifact)
    return artifact


# ------------------------------------------------------------------------------------------------------------


def _write_streamed(path: Path, shape: list[int], chunks: Iterator[torch.Tensor]) -> None:
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
        "fortran_order": False,
        "shape": tuple(shape),
    }
    written = 0
    with atomic_open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for chunk in chunks:
            handle.write(chunk.contiguous().numpy().tobytes())
            written += chunk.shape[0]
        if written != shape[0]:
            raise RuntimeError(f"internal error: wrote {written} of {shape[0]} images to {path}")


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
            raise ValueError("not a comprobust elemental-set manifest")
        return manifest
    except (ValueError, AttributeError) as err:
        raise UserError(
            f"manifest {path} is unreadable ({err}); move the folder {path.parent} away and prepare again"
        ) from err


def _check_request(manifest: dict, path: Path, dataset: str, seed: int, sources: dict) -> None:
    problems = []
    if manifest["dataset"] != dataset:
        problems.append(f"dataset {manifest['dataset']} (asked: {dataset})")
    if manifest["seed"] != int(seed):
        problems.append(f"seed {manifest['seed']} (asked: {seed})")
    for split, source in sources.items():
        old = manifest["sources"].get(split)
        if old is not None and old["sha256"] != source["sha256"]:
            problems.append(f"a different {split} split ({old['count']} images; asked: {source['count']})")
    if problems:
        raise UserError(
            f"{path.parent} already holds elemental sets for {', '.join(problems)} (see {path}); "
            "choose another output folder (--out) or delete that one"
        )


def _verify_file(path: Path, entry: dict, manifest_path: Path) -> None:
    if not path.is_file():
        raise UserError(
            f"generated file {path} listed in {manifest_path} is missing; delete {path.parent} and prepare "
            "again"
        )
    if file_sha256(path) != entry["sha256"]:
        raise UserError(
            f"generated file {path} does not match its SHA-256 in {manifest_path} (corrupted or changed); it "
            f"is not regenerated automatically: delete {path.parent} and run `launch.py data prepare` again"
        )


def _remove_stray_temporaries(out: Path) -> None:
    for stray in out.glob(".*.tmp-*"):  # left by a killed atomic write; never a published file
        with contextlib.suppress(OSError):
            stray.unlink()


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Serialise concurrent preparations of the same folder (e.g. several jobs of a Slurm array)."""
    with open(out / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
