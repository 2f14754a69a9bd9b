"""Fashion-MNIST (Zalando, 10 clothing classes, 28x28 grey) from its IDX files, plain or gzipped.

Looked for, in order: torchvision's layout `<root>/FashionMNIST/raw/` (what `--download` writes), then the Debian
package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`). The images are stored upright, row
major (unlike EMNIST's transposed glyphs); each file's header, item shape and length are checked.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import TYPE_CHECKING

from comprobust.errors import UserError

if TYPE_CHECKING:  # numpy is imported where files are read: validating and planning need none of it
    import numpy as np

    Part = tuple[np.ndarray, np.ndarray]  # uint8 images (N, 1, 28, 28), int64 labels (N,)

FOLDER = Path("FashionMNIST") / "raw"  # under the dataset root: torchvision.datasets.FashionMNIST's layout
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package
PARTS = {"train": "train", "test": "t10k"}
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def file_names(part: str) -> dict[str, str]:
    """The images and labels file names of `part` ('train' or 'test'), without '.gz'."""
    return {"images": f"{PARTS[part]}-images-idx3-ubyte", "labels": f"{PARTS[part]}-labels-idx1-ubyte"}


def find_file(folder: Path, name: str) -> Path | None:
    """`folder/name`, else `folder/name.gz`, else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def complete_folder(root: Path) -> Path | None:
    """The first folder holding all four files (plain or gzipped): torchvision's, then Debian's."""
    for folder in (Path(root) / FOLDER, DEBIAN_FOLDER):
        if all(find_file(folder, name) for part in PARTS for name in file_names(part).values()):
            return folder
    return None


def missing_files(root: Path) -> list[str]:
    """The torchvision-layout files that are missing, or [] when either folder is complete."""
    if complete_folder(root) is not None:
        return []
    folder = Path(root) / FOLDER
    return [
        str(folder / name)
        for part in PARTS
        for name in file_names(part).values()
        if not find_file(folder, name)
    ]


def read_idx(path: Path, dims: int, item_shape: tuple[int, ...], fix: str) -> np.ndarray:
    """A uint8 IDX file (gzipped when it ends in .gz) as an array of shape (N, *item_shape)."""
    import numpy as np

    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise UserError(f"{path} cannot be read ({err}); {fix}") from err
    header = 4 + 4 * dims
    if len(data) < header or data[:4] != bytes([0, 0, 8, dims]):
        raise UserError(f"{path} is not a uint8 IDX file with {dims} dimension(s); {fix}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if shape[1:] != item_shape:
        raise UserError(f"{path} holds items of shape {shape[1:]}, expected {item_shape}; {fix}")
    if len(data) != header + math.prod(shape):
        raise UserError(
            f"{path} is truncated or corrupt: its header announces {shape[0]} items but it holds "
            f"{len(data) - header} bytes of data; {fix}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_fashion_mnist(root: Path, download: bool) -> tuple[Part, Part, Path]:
    """(train part, test part, the folder they came from)."""
    import numpy as np

    how = (
        f"get it with `python launch.py data prepare --dataset fashion-mnist --root {root} --download`, "
        f"put the four IDX files (train/t10k-images-idx3-ubyte, train/t10k-labels-idx1-ubyte, plain or .gz) "
        f"in {Path(root) / FOLDER}/, or install the Debian package dataset-fashion-mnist"
    )
    folder = complete_folder(root)
    if folder is None and download:
        from torchvision.datasets import FashionMNIST

        try:
            FashionMNIST(str(root), train=True, download=True)
        except (OSError, RuntimeError) as err:
            raise UserError(
                f"downloading Fashion-MNIST into {Path(root) / FOLDER} failed ({err}); {how}"
            ) from err
        folder = complete_folder(root)
    if folder is None:
        raise UserError(
            f"Fashion-MNIST not found: looked for {', '.join(missing_files(root))} and in "
            f"{DEBIAN_FOLDER}/; {how}"
        )
    fix = f"replace it; {how}"
    found: Path = folder
    parts = []
    for part in PARTS:
        names = file_names(part)
        image_file, label_file = find_file(found, names["images"]), find_file(found, names["labels"])
        assert image_file is not None and label_file is not None  # complete_folder found both
        images = read_idx(image_file, 3, (28, 28), fix)
        labels = read_idx(label_file, 1, (), fix)
        if len(images) != len(labels) or (len(labels) and labels.max() >= len(CLASSES)):
            raise UserError(
                f"{folder}: the {part} files hold {len(images)} images and {len(labels)} labels "
                f"(labels must be 0..{len(CLASSES) - 1}); {fix}"
            )
        parts.append((np.ascontiguousarray(images[:, None]), labels.astype(np.int64)))
    return parts[0], parts[1], folder
