"""The corruption engine: fidelity to the paper's scikit-image outputs, compositions, reproducible noise, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from comprobust import corruption_names as names
from comprobust import corruptions as cr
from comprobust.compositions import ordered_pairs, orderings_up_to, paper_compositions, resolve_compositions
from comprobust.corruptions_reference import corrupt_image, corrupt_image_float
from comprobust.errors import UserError
from comprobust.noise import element_bits16

FIXTURES = Path(__file__).parent / "fixtures"
DETERMINISTIC = ("Identity", "Contrast", "GaussianBlur", "Invert", "Rotate90", "Swirl")
EXACT = ("Identity", "Invert", "Rotate90")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "corruption_reference_skimage0193.npz") as data:
        return {key: data[key] for key in data.files}


def _float_output(image: np.ndarray, name: str) -> np.ndarray:
    """A single image through one corruption, float32 before truncation, via the batched engine."""
    planes_last = torch.from_numpy(image.astype(np.float32)).reshape(image.shape[0], image.shape[1], 1, -1)
    out = cr.get_corruption(name).apply(planes_last, np.zeros(1, np.uint64))
    return out[:, :, 0, 0].numpy() if image.ndim == 2 else out[:, :, 0].numpy()


def test_paper_compositions_equal_the_reference_list_in_content_and_order() -> None:
    lines = (FIXTURES / "compositions.txt").read_text().splitlines()[1:]
    expected = [tuple(line.split("-")) for line in lines if line.strip()]
    assert len(expected) == 167
    assert paper_compositions() == expected


@pytest.mark.parametrize("kind", ["gray", "rgb"])
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_elemental_matches_skimage_0193_reference(reference: dict, kind: str, name: str) -> None:
    image = reference[f"{kind}_in"].astype(np.uint8)
    out = _float_output(image, name)
    expected = reference[f"{kind}_{name}"]
    assert out.shape == expected.shape
    if name in EXACT:  # exact up to the reference's own float round-off (warp gives 1e-12)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    else:
        assert np.mean(np.abs(out - expected) <= 1.0) >= 0.995


def test_composition_truncates_once_at_the_end(reference: dict) -> None:
    """Appendix B: grey Contrast->Rotate90 has float mean 126.9694 and uint8 mean 126.4426."""
    image = reference["gray_in"].astype(np.uint8)
    float_mean = corrupt_image_float(image, "Contrast-Rotate90").mean()
    uint8_out = cr.corrupt(image[None], "Contrast-Rotate90")[0]
    assert float_mean == pytest.approx(126.9694, abs=1e-3)
    assert uint8_out.mean() == pytest.approx(126.4426, abs=1e-3)


@pytest.mark.parametrize("shape", [(6, 28, 28), (5, 32, 32, 3), (3, 100, 100, 3), (4, 32, 32, 1)])
@pytest.mark.parametrize(
    "composition",
    ["Contrast", "GaussianBlur", "Swirl", "Rotate90", "Swirl-Contrast-GaussianBlur-Invert-Rotate90"],
)
def test_batched_engine_agrees_with_per_image_skimage(shape: tuple, composition: str) -> None:
    images = np.random.default_rng(7).integers(0, 256, size=shape, dtype=np.uint8)
    batched = cr.corrupt(images, composition).astype(int)
    per_image = np.stack([corrupt_image(image, composition) for image in images]).astype(int)
    assert batched.shape == images.shape
    assert np.mean(np.abs(batched - per_image) <= 1) >= 0.995


def _noise_fractions(out: np.ndarray) -> tuple[float, float]:
    return float(np.mean(out == 255)), float(np.mean(out == 0))


@pytest.mark.parametrize("shape", [(200, 28, 28), (100, 32, 32, 3)])
def test_impulse_noise_sets_13_5_percent_to_each_extreme(shape: tuple) -> None:
    images = np.full(shape, 128, dtype=np.uint8)
    salt, pepper = _noise_fractions(cr.corrupt(images, "ImpulseNoise", seed=3))
    assert salt == pytest.approx(0.135, abs=0.005)
    assert pepper == pytest.approx(0.135, abs=0.005)


def test_impulse_noise_is_independent_per_colour_channel() -> None:
    out = cr.corrupt(np.full((200, 32, 32, 3), 128, dtype=np.uint8), "ImpulseNoise")
    flipped = out != 128
    all_channels = float(np.mean(flipped.all(axis=-1)))
    assert all_channels == pytest.approx(0.27**3, abs=0.005)  # shared masks would give 0.27


def test_impulse_noise_depends_only_on_seed_composition_and_image_index() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    whole = cr.corrupt(images, "Contrast-ImpulseNoise", seed=5)
    # Split across "processes" and batches of other sizes, with global indices: identical.
    parts = [
        cr.corrupt(images[start:stop], "Contrast-ImpulseNoise", seed=5, indices=np.arange(start, stop))
        for start, stop in ((0, 3), (3, 4), (4, 10))
    ]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    # Reordered images with their indices: each image keeps its noise.
    order = np.random.default_rng(1).permutation(10)
    shuffled = cr.corrupt(images[order], "Contrast-ImpulseNoise", seed=5, indices=order)
    np.testing.assert_array_equal(shuffled, whole[order])
    # Another seed or another composition draws other noise.
    assert not np.array_equal(cr.corrupt(images, "Contrast-ImpulseNoise", seed=6), whole)
    other = cr.corrupt(cr.corrupt(images, "Contrast"), "ImpulseNoise", seed=5)
    assert not np.array_equal(other, whole)


def test_numpy_and_torch_inputs_give_identical_outputs() -> None:
    images = np.random.default_rng(2).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    from_numpy = cr.corrupt(images, "GaussianBlur-ImpulseNoise-Swirl", seed=1)
    from_torch = cr.corrupt(torch.from_numpy(images), "GaussianBlur-ImpulseNoise-Swirl", seed=1)
    assert isinstance(from_numpy, np.ndarray) and isinstance(from_torch, torch.Tensor)
    np.testing.assert_array_equal(from_numpy, from_torch.numpy())


def test_rotate90_is_counter_clockwise() -> None:
    image = np.arange(9, dtype=np.uint8).reshape(1, 3, 3)
    np.testing.assert_array_equal(cr.corrupt(image, "Rotate90")[0], np.rot90(image[0]))


def test_names_and_abbreviations() -> None:
    assert cr.composition_name(["CO", "R90"]) == "Contrast-Rotate90"
    assert cr.abbreviate("Contrast-Rotate90") == "CO-R90"
    assert cr.parse_composition("IN-Swirl") == ("Invert", "Swirl")


def test_severity_changes_strength_and_is_validated() -> None:
    assert cr.get_corruption("GaussianBlur").parameter == 2.0
    assert cr.get_corruption("GaussianBlur", 5).parameter == 6.0
    images = np.full((50, 28, 28), 128, dtype=np.uint8)
    light = np.mean(cr.corrupt(images, "ImpulseNoise", severities={"ImpulseNoise": 1}) != 128)
    assert light == pytest.approx(0.03, abs=0.01)
    for bad in (0, 6, 2.5, True):
        with pytest.raises(UserError, match="severity must be an integer in 1..5"):
            cr.get_corruption("Contrast", bad)
    with pytest.raises(UserError, match="has no severity"):
        cr.get_corruption("Invert", 2)


def test_unknown_corruption_lists_the_known_names() -> None:
    with pytest.raises(UserError, match="unknown corruption 'Fog'.*Contrast.*Swirl"):
        cr.corrupt(np.zeros((1, 28, 28), np.uint8), "Contrast-Fog")


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 28, 28), np.float32), "must be uint8 in 0..255"),
        (torch.zeros((2, 28, 28)), "must be uint8 in 0..255"),
        (np.zeros((28, 28), np.uint8), r"\(N, H, W\) for grey"),
        (np.zeros((2, 28, 28, 4), np.uint8), r"C in \(1, 3\)"),
        ([[1, 2]], "numpy array or torch tensor"),
    ],
)
def test_bad_images_are_refused_with_the_expected_shapes(images: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        cr.corrupt(images, "Contrast")


def test_user_registers_a_corruption_with_one_class() -> None:
    @cr.register
    class Posterize(cr.Corruption):
        name, abbreviation, lossless = "PosterizeTest", "POT", False
        severities = (6, 5, 4, 3, 2)
        default_severity = 3

        def apply(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
            step = 2 ** (8 - self.parameter)
            return torch.floor(x / step) * step

    try:
        out = cr.corrupt(np.arange(256, dtype=np.uint8).reshape(1, 16, 16), "Invert-POT")
        assert len(np.unique(out)) == 16
        assert resolve_compositions(["PosterizeTest-Swirl"]) == [("PosterizeTest", "Swirl")]
    finally:
        cr.CORRUPTIONS._entries.pop("PosterizeTest")
        names._ABBREVIATION.pop("PosterizeTest")
        names._BY_ABBREVIATION.pop("POT")


def test_composition_sets() -> None:
    pairs = ordered_pairs()
    assert len(pairs) == 1 + 6 + 30 and len(set(pairs)) == len(pairs)
    assert len(orderings_up_to(3)) == 1 + 6 + 30 + 120
    assert resolve_compositions("paper") == paper_compositions()
    assert resolve_compositions({"max_length": 2}) == pairs
    assert resolve_compositions(["Identity", "CO-R90"]) == [("Identity",), ("Contrast", "Rotate90")]
    with pytest.raises(UserError, match="repeats Contrast"):
        resolve_compositions(["Contrast", "CO"])
    with pytest.raises(UserError, match="max_length must be an integer in 1..6"):
        resolve_compositions({"max_length": 9})
    with pytest.raises(UserError, match="expected 'paper', 'pairs'"):
        resolve_compositions("everything")


def test_corrupt_many_shares_prefixes_with_identical_results() -> None:
    images = torch.from_numpy(np.random.default_rng(4).integers(0, 256, size=(6, 3, 32, 32), dtype=np.uint8))
    compositions = paper_compositions()
    indices = np.arange(100, 106)
    results = dict(cr.corrupt_many(images, compositions, seed=9, indices=indices))
    assert set(results) == set(compositions)
    for composition in compositions[::7]:
        np.testing.assert_array_equal(
            results[composition], cr.corrupt_batch(images, composition, seed=9, indices=indices)
        )


@pytest.mark.parametrize(
    "shape, seed, start, digest",
    [
        ((4, 28, 28), 0, 0, "aba4b167ddeec7d4"),
        ((3, 32, 32, 3), 1, 5, "3d960ed695e773fa"),
        ((2, 5, 5, 3), 2, 0, "c96380e4a72e3fc9"),
    ],  # the last: 25 pixels, so hash quads straddle the channels
)
def test_impulse_noise_stream_is_pinned_across_versions(
    shape: tuple, seed: int, start: int, digest: str
) -> None:
    """The noise of (seed, composition, image index) is the one every earlier version drew, in any layout."""
    images = np.full(shape, 128, dtype=np.uint8)
    out = cr.corrupt(images, "ImpulseNoise", seed=seed, indices=np.arange(start, start + shape[0]))
    assert hashlib.sha256(out.tobytes()).hexdigest()[:16] == digest


@pytest.mark.parametrize("shape", [(40, 1, 28, 28), (12, 3, 32, 32)])
def test_outputs_do_not_depend_on_batch_split_or_thread_count(shape: tuple) -> None:
    images = torch.from_numpy(np.random.default_rng(5).integers(0, 256, size=shape, dtype=np.uint8))
    compositions = paper_compositions()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        whole = dict(cr.corrupt_many(images, compositions, seed=4))
        torch.set_num_threads(1)
        bounds = (0, 1, 7, 7, shape[0])  # includes an empty part
        for start, stop in zip(bounds, bounds[1:]):
            part = dict(
                cr.corrupt_many(images[start:stop], compositions, seed=4, indices=np.arange(start, stop))
            )
            for composition in compositions:
                assert part[composition].shape == (stop - start, *shape[1:])
                assert torch.equal(part[composition], whole[composition][start:stop]), composition
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["GaussianBlur", "Swirl", "Contrast"])
@pytest.mark.parametrize("planes", [1, 3, 11, 63])
def test_a_planes_float_result_does_not_depend_on_the_planes_beside_it(name: str, planes: int) -> None:
    """Below the final truncation too: BLAS takes other paths for narrow products, so the blur pads them."""
    x = torch.from_numpy(np.random.default_rng(7).random((28, 28, 80, 1), dtype=np.float32) * 255)
    corruption = cr.get_corruption(name)
    alone = corruption.apply(x[:, :, 5 : 5 + planes].contiguous(), np.zeros(0, np.uint64))
    assert torch.equal(alone, corruption.apply(x, np.zeros(0, np.uint64))[:, :, 5 : 5 + planes])


def test_a_callers_bf16_autocast_does_not_reach_the_corruptions() -> None:
    images = torch.from_numpy(np.random.default_rng(6).integers(0, 256, size=(4, 1, 28, 28), dtype=np.uint8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = cr.corrupt_batch(images, "GaussianBlur-Swirl-Contrast")
    assert torch.equal(under_autocast, cr.corrupt_batch(images, "GaussianBlur-Swirl-Contrast"))


def test_the_torch_only_impulse_noise_of_gpus_equals_the_cpu_path() -> None:
    x = torch.rand(28, 28, 5, 3) * 255
    keys = cr.noise_keys(0, ("ImpulseNoise",), np.arange(5))
    bits = torch.from_numpy(element_bits16(keys, 28 * 28, 3).view(np.int16))
    threshold = round(0.27 * 2**15)
    assert torch.equal(
        cr._impulse_on_device(x, bits, threshold), cr.get_corruption("ImpulseNoise").apply(x, keys)
    )


@pytest.mark.parametrize("severity", [1, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize(
    "h, w, n, c", [(28, 28, 6, 1), (32, 32, 5, 3), (27, 27, 4, 3), (5, 3, 2, 1), (8, 8, 0, 3)]
)
def test_the_compiled_impulse_pass_is_the_element_bits_definition(
    severity: int, dtype: type, h: int, w: int, n: int, c: int
) -> None:
    """One compiled pass on CPU, against the definition written with `element_bits16`: bits 0..14 below the
    threshold flip an element, bit 15 makes it 255 (else 0); quads straddle rows when H*W is not a multiple of 4."""
    rng = np.random.default_rng(severity)
    x = (rng.random((h, w, n, c), dtype=np.float32) * 255).astype(dtype)
    keys = cr.noise_keys(severity, ("ImpulseNoise",), np.arange(7, 7 + n))
    corruption = cr.get_corruption("ImpulseNoise", severity)
    bits = element_bits16(keys, h * w, c).reshape(h, w, n, c).astype(np.int32)
    flipped = (bits & 0x7FFF) < round(corruption.strength * 2**15)
    expected = np.where(flipped, np.where(bits >= 2**15, 255, 0), x).astype(dtype)
    out = corruption.apply(torch.from_numpy(x), keys)
    assert out.dtype == torch.from_numpy(x).dtype and out.shape == (h, w, n, c)
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("name", [*DETERMINISTIC, "ImpulseNoise"])
def test_a_last_steps_fused_truncation_equals_truncating_after_it(name: str) -> None:
    x = torch.from_numpy(np.random.default_rng(8).random((28, 28, 5, 3), dtype=np.float32) * 255)
    x[0, 0] = 255.0  # exact extremes too
    x[1, 1] = 0.0
    corruption, keys = cr.get_corruption(name), cr.noise_keys(1, (name,), np.arange(5))
    fused = corruption.apply_uint8(x, keys)
    assert fused.dtype == torch.uint8
    assert torch.equal(fused, cr._truncate_uint8(corruption.apply(x, keys)))


def test_commuting_steps_move_and_share_work_but_noise_keeps_its_key() -> None:
    corruptions = {name: cr.get_corruption(name) for name in cr.ELEMENTALS}
    given = ("Invert", "Rotate90", "GaussianBlur", "ImpulseNoise", "Invert", "Swirl")
    assert cr._work_order(given, corruptions) == (
        ("GaussianBlur", None),
        ("Rotate90", None),
        ("Invert", None),
        ("ImpulseNoise", given[:4]),  # never moves, and draws with the key of its place as given
        ("Swirl", None),
        ("Invert", None),
    )
    images = np.random.default_rng(9).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    together = dict(cr.corrupt_many(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), [given]))
    alone = cr.corrupt(images, "-".join(given))
    np.testing.assert_array_equal(together[given].permute(0, 2, 3, 1).numpy(), alone)
    # Orders that differ only in where a commuting corruption stands give one result, each its own tensor.
    orders = [
        ("Invert", "Contrast", "Swirl"),
        ("Contrast", "Invert", "Swirl"),
        ("Contrast", "Swirl", "Invert"),
    ]
    results = dict(cr.corrupt_many(torch.from_numpy(images[:, :, :, 0]).unsqueeze(1), orders))
    assert set(results) == set(orders)
    assert all(torch.equal(results[orders[0]], results[order]) for order in orders)
    assert len({results[order].data_ptr() for order in orders}) == 3


def test_noise_after_moved_steps_flips_the_elements_of_its_composition_as_given() -> None:
    images = np.full((4, 32, 32, 3), 128, dtype=np.uint8)
    composition = ("Invert", "GaussianBlur", "ImpulseNoise")
    out = cr.corrupt(images, "-".join(composition), seed=3, indices=np.arange(10, 14))
    keys = cr.noise_keys(3, composition, np.arange(10, 14))
    bits = element_bits16(keys, 32 * 32, 3).astype(np.int32)  # (pixels, N, C)
    threshold = round(0.27 * 2**15)
    flipped = (bits & 0x7FFF) < threshold
    salt = flipped & (bits >= 2**15)
    planes_last = out.transpose(1, 2, 0, 3).reshape(32 * 32, 4, 3)
    np.testing.assert_array_equal(planes_last == 255, salt)
    np.testing.assert_array_equal(planes_last == 0, flipped & ~salt)
    assert set(np.unique(planes_last[~flipped])) <= {126, 127}
