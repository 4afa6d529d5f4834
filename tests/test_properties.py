"""Property tests of the weight-sharing layers, the group-recovery threshold and bit-exact resume.

- Every layer's expanded kernel is `R_g θ` for the `R_g` that `representations()` reports, for every g, in 1D/2D/3D,
  lifting and group layers, learned and fixed; with the identity anchor, slot 0 is θ itself.
- Fixed-representation layers are exactly equivariant under every element of two non-abelian groups: the dihedral
  group D4 on 2D images and the 24 rotations of the cube on 3D volumes (a mix-up between h∘a and a∘h is caught:
  the planted versions below must fail the same check).
- `recovers_group(max_error=...)` on both sides of its threshold.
- A WSCNN with learned representations, interrupted at an epoch boundary and resumed, ends bit for bit where an
  uninterrupted run ends, in float32 and under bfloat16 autocast.
"""
import functools, math

import pytest
import torch
import torch.nn.functional as F

from symmetries.analysis import convex_fit, recovers_group
from symmetries.groups import (cube_rotation_group, cyclic_group, dihedral_group, group_space_action, perms_to_matrices,
                               rotation_group)
from symmetries.layers import (WSGroupConv1d, WSGroupConv2d, WSGroupConv3d, WSLiftConv1d, WSLiftConv2d, WSLiftConv3d)
from symmetries.models import WSCNN, ws_regularizer
from symmetries.sinkhorn import sinkhorn
from symmetries.train import fit, load_checkpoint
from symmetries.utils import cpu_threads



@pytest.fixture(autouse=True)
def one_thread():
    "These tensors are tiny: one intra-op thread (two threads spin against each other on a busy 2-core machine)."
    with cpu_threads(1): yield


CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
LAYERS = {(1, True): WSLiftConv1d, (2, True): WSLiftConv2d, (3, True): WSLiftConv3d,
          (1, False): WSGroupConv1d, (2, False): WSGroupConv2d, (3, False): WSGroupConv3d}
# the kernel tests' fixed groups on the k^n kernel positions: (group, k); learned layers take LEARNED_G matrices
SPACE_GROUPS = {1: (cyclic_group, 3), 2: (dihedral_group, 3), 3: (cube_rotation_group, 2)}
LEARNED_G = 4


# ------------------------------------------------------------------------------------------------------------------
# 1. kernel() == R_g θ for every g, with the identity anchor
# ------------------------------------------------------------------------------------------------------------------

def _make_layer(nd: int, lifting: bool, reps: str, seed: int = 0):
    "A small layer: `reps` 'learned', 'learned-free' (no identity anchor), 'fixed' (a Group) or 'fixed-soft' (a tensor)."
    torch.manual_seed(seed)
    make_group, k = SPACE_GROUPS[nd]
    space = make_group(k)
    G = LEARNED_G if reps.startswith("learned") else space.order
    cls = LAYERS[(nd, lifting)]
    kw = dict(padding=1)
    if reps == "learned":
        layer = cls(2, 3, k, G, init_mode="rand", **kw)
    elif reps == "learned-free":
        layer = cls(2, 3, k, G, init_mode="rand", fix_identity=False, **kw)
    elif reps == "fixed":
        layer = cls(2, 3, k, G, representations=space, **kw)
    elif reps == "fixed-soft":               # doubly stochastic, not permutations: the matrix-product path
        d = (1 if lifting else G) * k ** nd
        soft = sinkhorn(torch.randn(G, d, d), n_iter=20)
        soft[0] = torch.eye(d)
        layer = cls(2, 3, k, G, representations=soft, **kw)
    else: raise ValueError(reps)
    with torch.no_grad(): layer.bias.normal_()
    return layer


def _expected_kernel(layer) -> torch.Tensor:
    "R_g θ[o, c] laid out as the layer's single convolution expects: (O·G, C·G_in, k, ..., k)."
    R, theta = layer.representations().detach(), layer.weight.detach()          # (G, d, d), (O, C, d)
    O, C, d = theta.shape
    G, nd, k = R.shape[0], layer.spatial_dims, layer.kernel_size
    W = torch.einsum("gij,ocj->ogci", R.double(), theta.double()).float()      # W[o, g, c] = R_g θ[o, c]
    return W.reshape(O * G, C * (d // k ** nd), *(k,) * nd)


def _check_kernel(layer, anchored: bool):
    "kernel() against representations() and θ; the identity anchor (`anchored`); forward() against a convolution with R_g θ."
    K = layer.kernel().detach()
    R, theta = layer.representations().detach(), layer.weight.detach()
    O, C, d = theta.shape
    G = R.shape[0]
    torch.testing.assert_close(K, _expected_kernel(layer), rtol=1e-5, atol=1e-6)
    per_g = K.reshape(O, G, C, d)                                               # K[o·G + g, c·G_in + a, ...] -> [o, g, c, (a, ...)]
    for g in range(G):                                                          # the same statement, one element at a time
        torch.testing.assert_close(per_g[:, g], theta @ R[g].T, rtol=1e-5, atol=1e-6, msg=lambda m: f"g={g}: {m}")
    if anchored:
        assert torch.equal(R[0], torch.eye(d)), "R_0 must be the identity"
        assert torch.equal(per_g[:, 0], theta), "kernel slot 0 must be θ itself (identity anchor)"
    # forward() uses this kernel: compare with a plain convolution built from R_g θ
    nd = layer.spatial_dims
    shape = (2, layer.in_channels) + (() if layer.lifting else (G,)) + (5,) * nd
    x = torch.randn(shape)
    ref = CONV[nd](x if layer.lifting else x.flatten(1, 2), _expected_kernel(layer), layer.bias.detach().repeat_interleave(G),
                   padding=1).unflatten(1, (O, G))
    torch.testing.assert_close(layer(x).detach(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reps", ["learned", "learned-free", "fixed", "fixed-soft"])
@pytest.mark.parametrize("lifting", [True, False], ids=["lift", "group"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_kernel_is_representations_times_theta(nd, lifting, reps):
    layer = _make_layer(nd, lifting, reps)
    assert layer.learned == reps.startswith("learned")
    anchored = reps != "learned-free"                             # the fixed stacks above have the identity first
    _check_kernel(layer, anchored)                                # training mode: the kernel is built afresh
    if layer.learned:                                             # representations away from the initialisation
        with torch.no_grad(): layer.rep_logits.copy_(3 * torch.randn_like(layer.rep_logits))
        _check_kernel(layer, anchored)
    layer.eval()
    with torch.no_grad():                                         # inference: the cached kernel, then a changed θ
        _check_kernel(layer, anchored)
        layer.weight.add_(torch.randn_like(layer.weight))
        if layer.learned: layer.rep_logits.mul_(0.5)
        _check_kernel(layer, anchored)


def test_identity_anchor_of_learned_layers():
    "With fix_identity, R_0 = I exactly and the kernel's slot 0 is θ exactly, whatever the logits."
    for nd in (1, 2, 3):
        for lifting in (True, False):
            layer = _make_layer(nd, lifting, "learned", seed=nd)
            with torch.no_grad(): layer.rep_logits.copy_(5 * torch.randn_like(layer.rep_logits))
            R, theta = layer.representations().detach(), layer.weight.detach()
            O, C, d = theta.shape
            assert torch.equal(R[0], torch.eye(d))
            assert not torch.allclose(R[1], torch.eye(d), atol=0.1)                 # R_1 is not the identity ...
            slots = layer.kernel().detach().reshape(O, layer.group_size, C, d)
            assert torch.equal(slots[:, 0], theta)                                    # ... and slot 0 is θ, not R_1 θ
            assert not torch.allclose(slots[:, 1], theta, atol=1e-3)


# ------------------------------------------------------------------------------------------------------------------
# 2. equivariance under every element of D4 (2D) and of the cube's rotation group (3D)
# ------------------------------------------------------------------------------------------------------------------

GROUPS = {"D4": (2, functools.lru_cache(dihedral_group)), "cube": (3, functools.lru_cache(cube_rotation_group))}


def _space_act(make_group, x: torch.Tensor, h: int, nd: int) -> torch.Tensor:
    "Element h acting on the last nd (equal) spatial axes of x: the value at a point moves to its image under h."
    n = x.shape[-1]
    return make_group(n).act(x.flatten(-nd), h).reshape(x.shape)


def _group_signal_act(make_group, x: torch.Tensor, h: int, nd: int, side: str = "left") -> torch.Tensor:
    "h on a group signal (B, C, G, spatial): space as above, and the channel of element a moves to h∘a ('left')."
    y = _space_act(make_group, x, h, nd)
    table = make_group(3).table
    target = table[h] if side == "left" else table[:, h]                 # 'right' is the planted mix-up: a∘h
    out = torch.empty_like(y)
    out[:, :, target] = y
    return out


def _mixed_up_space_action(group):
    "The planted bug: the group layer's joint action with a∘h instead of h∘a, as permutation matrices."
    perms = (group.table.T[:, :, None] * group.n + group.perms[:, None, :]).reshape(group.order, group.order * group.n)
    return perms_to_matrices(perms)


def _equivariance_error(name: str, lifting: bool, reps="group", out_side="left", seed=0, padding=0) -> float:
    "Largest |layer(h·x) − h·layer(x)| over every element h, relative to max |layer(x)|."
    nd, make_group = GROUPS[name]
    k, size = 3, (7 if nd == 2 else 5)
    space = make_group(k)
    G = space.order
    torch.manual_seed(seed)
    if lifting:
        layer = LAYERS[(nd, True)](2, 3, k, G, padding=padding, representations=space)
        x = torch.randn((2, 2) + (size,) * nd)
    else:
        R = {"group": space, "matrices": group_space_action(space).matrices(), "mixed-up": _mixed_up_space_action(space)}[reps]
        layer = LAYERS[(nd, False)](2, 3, k, G, padding=padding, representations=R)
        x = torch.randn((2, 2, G) + (size,) * nd)
    with torch.no_grad(): layer.bias.normal_()
    y = layer(x).detach()
    act_in = (lambda t, h: _space_act(make_group, t, h, nd)) if lifting else (lambda t, h: _group_signal_act(make_group, t, h, nd))
    err = 0.0
    for h in range(G):
        lhs = layer(act_in(x, h)).detach()
        rhs = _group_signal_act(make_group, y, h, nd, out_side)
        err = max(err, (lhs - rhs).abs().max().item())
    return err / y.abs().max().item()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", ["lift", "group", "group-matrices", "lift-padded", "group-padded"])
@pytest.mark.parametrize("name", ["D4", "cube"])
def test_equivariance_every_element(name, case, seed):
    lifting = case.startswith("lift")
    reps = "matrices" if case == "group-matrices" else "group"
    err = _equivariance_error(name, lifting, reps, seed=seed, padding=1 if case.endswith("padded") else 0)
    assert err < 1e-5, f"{name} {case}: relative equivariance error {err:.3g}"


def test_groups_are_non_abelian():
    "The two groups above would not tell h∘a from a∘h if they commuted."
    for _, make_group in GROUPS.values():
        T = make_group(3).table
        assert not torch.equal(T, T.T)
    assert (len(dihedral_group(3)), len(cube_rotation_group(3))) == (8, 24)


@pytest.mark.parametrize("name", ["D4", "cube"])
def test_equivariance_check_catches_side_mixup(name):
    "The check above fails when either side confuses h∘a with a∘h: in the layer's representations or in the action."
    assert _equivariance_error(name, False, "mixed-up") > 0.1
    assert _equivariance_error(name, False, "group", out_side="right") > 0.1
    assert _equivariance_error(name, True, out_side="right") > 0.1
    # for an abelian group (C4) the mix-up is invisible: the non-abelian groups are what makes these checks bite
    c4 = rotation_group(3)
    torch.testing.assert_close(_mixed_up_space_action(c4), group_space_action(c4).matrices())


# ------------------------------------------------------------------------------------------------------------------
# 3. recovers_group: both sides of max_error
# ------------------------------------------------------------------------------------------------------------------

def _shrunk_group(t: float, n: int = 4):
    """The stack R_g = (1 − t) P_g of the cyclic group on n points, in a shuffled order. Its nearest convex combination
    of the group's matrices is (1 − t) P_g + (t/n) Σ_h P_h = R_g + (t/n) J, so each fit error (the Frobenius distance
    divided by √n, as `convex_fit` measures it) is exactly t/√n, and every dominant element is g."""
    P = cyclic_group(n).matrices(torch.float64)
    return (1 - t) * P[torch.tensor([2, 0, 3, 1])[:n]], t / math.sqrt(n)


def test_recovers_group_threshold_both_sides():
    group = cyclic_group(4)
    inside, err_in = _shrunk_group(0.18)             # fit error 0.09
    outside, err_out = _shrunk_group(0.22)           # fit error 0.11
    for R, err in ((inside, err_in), (outside, err_out)):    # the fit errors are the ones derived above
        fit = convex_fit(R, group)
        torch.testing.assert_close(fit.error.double(), torch.full((4,), err, dtype=torch.float64), rtol=0, atol=1e-4)
        assert fit.dominant.tolist() == [2, 0, 3, 1]
    assert recovers_group(inside, group)             # default max_error = 0.1
    assert not recovers_group(outside, group)
    assert recovers_group(outside, group, max_error=0.12)
    assert not recovers_group(outside, group, max_error=0.10)
    assert not recovers_group(inside, group, max_error=0.08)
    assert recovers_group(inside, group, max_error=0.095)
    # the dominant elements must cover the group, each once: an exact but repeated element is not the group
    exact = group.matrices()
    assert recovers_group(exact, group)
    assert not recovers_group(exact[[0, 1, 1, 3]], group)
    assert not recovers_group(exact[:3], group)


# ------------------------------------------------------------------------------------------------------------------
# 4. bit-exact resume of a WSCNN with learned representations (float32 and bfloat16 autocast)
# ------------------------------------------------------------------------------------------------------------------

class Interrupted(Exception): pass


def _interrupting(regularizer, after_calls: int):
    "`regularizer` that raises on call `after_calls + 1` (a crash in the middle of a training step)."
    calls = [0]
    def reg(model):
        calls[0] += 1
        if calls[0] > after_calls: raise Interrupted()
        return regularizer(model)
    return reg


def _rot_augment(x, generator=None):
    "Random quarter turns, drawn from fit's augmentation generator (its state must survive the resume too)."
    r = torch.randint(0, 4, (len(x),), generator=generator, device="cpu")
    return torch.stack([torch.rot90(xi, int(ri), dims=(-2, -1)) for xi, ri in zip(x, r)])


@pytest.mark.parametrize("amp", [None, "bf16"])
def test_wscnn_resume_is_bit_exact(tmp_path, amp):
    g = torch.Generator().manual_seed(0)
    train = (torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 10, (48,), generator=g))
    valid = (torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
    new_model = lambda: WSCNN(hidden_channels=4, kernel_size=3, num_hidden=1, init_mode="rand", lift_init_mode="rand")
    kw = dict(epochs=3, batch_size=16, lr=1e-2, rep_lr=2e-2, weight_decay=1e-4, scheduler="cosine", augment=_rot_augment,
              seed=3, device="cpu", show_progress=False, amp=amp)
    reg = ws_regularizer(norm_weight=0.1, entropy_weight=0.01)
    steps = 48 // 16

    torch.manual_seed(0); straight = new_model()
    assert straight.representation_parameters(), "the model must have learned representations"
    hist = fit(straight, train, valid, regularizer=reg, **kw)

    ck = str(tmp_path / "run.pt")
    torch.manual_seed(0); first = new_model()
    with pytest.raises(Interrupted):
        fit(first, train, valid, checkpoint=ck, regularizer=_interrupting(reg, steps + 1), **kw)   # dies in epoch 2
    saved = load_checkpoint(ck)
    assert saved["epoch"] == 1
    torch.manual_seed(123); resumed = new_model()                 # other initial weights: all state comes from the checkpoint
    hist2 = fit(resumed, train, valid, checkpoint=ck, resume=True, regularizer=reg, **kw)

    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name                # every parameter and buffer, bit for bit
    for (name, p), q in zip(straight.named_buffers(), resumed.buffers()): assert torch.equal(p, q), name
    drop = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]
    assert drop(hist2) == drop(hist)
    # not vacuous: the resumed epochs changed the weights and the representations after the checkpoint
    assert not torch.equal(saved["model"]["lift.rep_logits"], b["lift.rep_logits"])
    assert not torch.equal(saved["model"]["lift.weight"], b["lift.weight"])
