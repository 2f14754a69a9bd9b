"""Background batch preparation (`comprobust.data.prefetch`): the same batches, bit for bit, as the plain loaders;
the producer's errors reach the consumer; no producer thread outlives its loop; the training thread keeps its
torch threads."""

from __future__ import annotations

import dataclasses
import threading
import traceback

import pytest
import torch
from helpers.dataset_files import load_fake_cifar

from comprobust.corruptions import ELEMENTALS
from comprobust.data.dataset import LoadedDataset, load_dataset
from comprobust.data.loaders import MixedElementalLoader, PairedViewLoader
from comprobust.data.prefetch import prefetch

PRODUCER = "comprobust-prefetch"


def producers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == PRODUCER]


@pytest.fixture(autouse=True)
def no_producer_left():
    yield
    assert not producers(), "a prefetch producer thread outlived its test"


@pytest.fixture(scope="module")
def grey_cropped(tmp_path_factory: pytest.TempPathFactory) -> LoadedDataset:
    """mnist5k (80 train, 20 valid images) with crop and flip switched on, so that the grey path draws them too."""
    root = tmp_path_factory.mktemp("mnist5k-root")
    data = load_dataset("mnist5k", root=root, split_sizes={"train": 8, "valid": 2})
    return dataclasses.replace(data, spec=dataclasses.replace(data.spec, crop_padding=2, hflip=True))


@pytest.fixture(scope="module")
def colour(tmp_path_factory: pytest.TempPathFactory) -> LoadedDataset:
    """Fake CIFAR-10 (crop and flip on): 80 train, 20 valid images."""
    return load_fake_cifar(tmp_path_factory.mktemp("cifar-root"))


def test_items_are_those_of_the_plain_iteration_in_order() -> None:
    assert list(prefetch(iter(range(50)), depth=1)) == list(range(50))
    assert list(prefetch(range(7), depth=3)) == list(range(7))
    assert list(prefetch([])) == []


@pytest.mark.parametrize("depth", [0, -1, 1.5, True, None])
def test_a_bad_depth_is_refused(depth: object) -> None:
    with pytest.raises(ValueError, match="prefetch depth must be a positive integer"):
        prefetch(range(3), depth)  # type: ignore[arg-type]


@pytest.mark.parametrize("dataset", ["grey_cropped", "colour"])
@pytest.mark.parametrize("kind", ["paired", "mixed"])
def test_loader_batches_are_bit_identical_with_and_without_prefetching(
    request: pytest.FixtureRequest, dataset: str, kind: str
) -> None:
    data = request.getfixturevalue(dataset)
    if kind == "paired":
        loader: PairedViewLoader | MixedElementalLoader = PairedViewLoader(
            data, "train", views=("Identity", *ELEMENTALS), batch_size=16, seed=7
        )
    else:
        loader = MixedElementalLoader(data, "train", batch_size=48, seed=7)
    assert loader.augment and len(loader) > 1  # crop/flip are drawn: the check covers the augment stream
    for epoch in (0, 1):
        plain = list(loader.batches(epoch))
        prefetched = list(prefetch(loader.batches(epoch)))
        assert len(prefetched) == len(plain) == len(loader)
        for (x, y), (x0, y0) in zip(prefetched, plain, strict=True):
            assert x.dtype == x0.dtype and torch.equal(x, x0) and torch.equal(y, y0)
    assert not torch.equal(next(iter(loader.batches(0)))[0], next(iter(loader.batches(1)))[0])


def failing_source():
    yield 1
    yield 2
    raise KeyError("made in the producer")


def test_an_exception_in_the_producer_is_raised_by_the_consumer_with_its_traceback() -> None:
    got = []
    with pytest.raises(KeyError, match="made in the producer") as caught:
        for item in prefetch(failing_source()):
            got.append(item)
    assert got == [1, 2]  # every item made before the error arrives first
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert "failing_source" in frames  # the producer's frames are kept


def endless(made: list[int]):
    i = 0
    while True:
        made.append(i)
        yield i
        i += 1


def test_breaking_out_early_stops_and_joins_the_producer() -> None:
    made: list[int] = []
    for item in prefetch(endless(made), depth=2):
        assert producers()  # the producer runs while the loop does
        if item == 3:
            break
    assert not producers()
    settled = len(made)
    assert settled <= 4 + 2 + 1  # at most depth ahead, plus the one in hand
    threading.Event().wait(0.3)
    assert len(made) == settled  # and it made nothing after stopping


def test_an_exception_in_the_consumer_loop_stops_the_producer() -> None:
    closed = threading.Event()

    def source():
        try:
            yield from range(1000)
        finally:
            closed.set()  # the source is closed (in the producer thread)

    def consume() -> None:
        for item in prefetch(source()):
            if item == 5:
                raise RuntimeError("the training step failed")

    with pytest.raises(RuntimeError, match="the training step failed"):
        consume()
    assert closed.is_set() and not producers()


def test_closing_before_the_first_item_starts_nothing() -> None:
    started = threading.Event()

    def source():
        started.set()
        yield 1

    batches = prefetch(source())
    batches.close()  # type: ignore[attr-defined]
    assert not started.is_set() and not producers()


def test_the_producer_runs_single_threaded_and_the_consumer_keeps_its_threads() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = [
            (torch.get_num_threads(), inside)
            for inside in prefetch(torch.get_num_threads() for _ in range(4))
        ]
        assert seen == [(2, 1)] * 4  # producer at 1 thread, the consumer at its 2 meanwhile
        after: list[int] = []
        fresh = threading.Thread(target=lambda: after.append(torch.get_num_threads()))
        fresh.start()
        fresh.join()
        assert torch.get_num_threads() == 2 and after == [2]  # the default for new threads is put back
    finally:
        torch.set_num_threads(previous)
