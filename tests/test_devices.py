"""Device discipline without a GPU: every public entry point keeps its tensors on the device of its inputs / model.

CI has no GPU, so a tensor created on the default device (`torch.zeros(n)` without `device=`) next to CUDA data goes
unnoticed on a CPU. Here the models and data live on the CPU while torch's *default* device is `meta`
(`torch.set_default_device("meta")`): a tensor made without `device=` lands on `meta`, and mixing it with the CPU
tensors raises "Tensor on device meta is not on the expected device cpu!". The same code path on a GPU would have
mixed CPU and CUDA tensors. Each test builds its inputs on the CPU (`with torch.device("cpu")`), then calls the entry
point in the strict mode at a tiny size. What this cannot see (speed, CUDA-only kernels) is left to
scripts/gpu_check.sh, which runs the notebooks and the main job on a real GPU.
"""
import contextlib, math, os, sys

import matplotlib
matplotlib.use("Agg")
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from symmetries import analysis, data, groups, layers, meta, meta_models, models, sharing, sinkhorn, tasks, train, utils
from symmetries import msr_synthetic, ws_cifar, ws_mnist, ws_toys, experiments, reproduce, discovery

CPU = torch.device("cpu")
CONSTRUCTORS = _device_constructors()


# builders from plain numbers: a group's permutations are made on the default device and kept on the CPU (Group
# copies them there), whatever the default device; they are not operations on someone's tensors
BUILDERS = {f.__code__ for f in (groups.cyclic_group, groups.rotation_group, groups.dihedral_group, groups.cube_rotation_group,
                                 groups.direct_product, groups.Group.__init__)}


def _building() -> bool:
    "True while a module is built (layers make their parameters on the default device, as torch's own do) or a group."
    f = sys._getframe(2)
    while f is not None:
        if f.f_code in BUILDERS or (f.f_code.co_name == "__init__" and isinstance(f.f_locals.get("self"), torch.nn.Module)):
            return True
        f = f.f_back
    return False


TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
# torch's dispatch of a factory call through a TorchFunctionMode: frames between the caller and the mode
DISPATCH = {os.path.join(TORCH_DIR, "overrides.py"), os.path.join(TORCH_DIR, "utils", "_device.py")}


def _made_by_torch() -> bool:
    """True when torch's own Python code makes the tensor, not the project's: e.g. an optimizer's step counter, which
    torch 2.11's Adam makes with `torch.tensor(0.0)` and reads back with `.item()` (later releases pass
    `device="cpu"`)."""
    f = sys._getframe(2)                        # the factory's caller (frame 1 is __torch_function__)
    while f is not None and f.f_code.co_filename in DISPATCH: f = f.f_back
    return f is not None and f.f_code.co_filename.startswith(TORCH_DIR)


class StrictDevices(TorchFunctionMode):
    """`torch.set_default_device("meta")` for the tensors library code *makes* without `device=`. Three exceptions
    behave as under the usual CPU default: converting an existing tensor (`torch.as_tensor(t)` keeps its device),
    building a module or a group (parameters go to the default device, as for `nn.Linear`, and runners move the model
    with `.to`; a group keeps its permutations on the CPU), and the tensors torch's own code makes (its business, and
    its choice differs between releases)."""
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func in CONSTRUCTORS and kwargs.get("device") is None and not (args and isinstance(args[0], torch.Tensor))
                and not _building() and not _made_by_torch()):
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


@contextlib.contextmanager
def strict_devices():
    "Tensors created without an explicit device go to `meta` for the block: they cannot mix with the CPU data."
    with StrictDevices(): yield


def on_cpu(fn, *args, **kwargs):
    "Build inputs on the CPU (explicitly, while the strict default is active)."
    with torch.device("cpu"): return fn(*args, **kwargs)


@pytest.fixture(autouse=True)
def strict(request):
    torch.manual_seed(0)
    if request.node.name.startswith("test_cuda"): yield; return     # real devices: nothing to emulate
    with strict_devices(): yield


def assert_cpu(*ts):
    for t in ts:
        if isinstance(t, torch.Tensor): assert t.device == CPU, t.device


def test_strict_mode_catches_a_default_device_tensor():
    # the mechanism itself: a tensor made without device= next to CPU data raises, one made like the input does not
    x = on_cpu(torch.randn, 3)
    with pytest.raises(RuntimeError, match="meta"): x + torch.zeros(3)
    assert_cpu(x + torch.zeros(3, device=x.device))
    # what torch's own code makes is left alone: AdamW's step counter (made without device= by some releases)
    p = on_cpu(torch.zeros, 2, requires_grad=True); p.grad = on_cpu(torch.ones, 2)
    torch.optim.AdamW([p], lr=0.1).step()
    assert_cpu(p)


# ---- math core (groups, sharing, Sinkhorn) ------------------------------------------------------------------------
def test_groups_and_sharing():
    for g in (on_cpu(groups.cyclic_group, 5), on_cpu(groups.rotation_group, 3), on_cpu(groups.dihedral_group, 3)):
        M = g.matrices()
        assert_cpu(M, groups.matrices_to_perms(M), groups.inverse_permutation(g.perms), g.act(on_cpu(torch.randn, 2, g.n), 1))
    c4 = on_cpu(groups.cyclic_group, 4)
    lin = on_cpu(sharing.SharingLinear, 4, 4, U=on_cpu(sharing.group_sharing_matrix, c4, c4))
    x = on_cpu(torch.randn, 2, 4)
    lin(x).sum().backward()
    conv = on_cpu(sharing.SharingConv2d, 1, 2, 3, padding=1, padding_mode="circular")
    conv.set_factors(kernel=on_cpu(groups.rotation_group, 3))
    conv(on_cpu(torch.randn, 1, 1, 5, 5)).sum().backward()
    assert_cpu(sharing.sharing_linear(x, lin.U, lin.v), sharing.group_average(on_cpu(groups.cyclic_group, 4)))


def test_sharing_orbits():
    assert_cpu(sharing.group_sharing_matrix(on_cpu(groups.cyclic_group, 4), on_cpu(groups.cyclic_group, 4)))


def test_permutation_group():
    assert groups.permutation_group(on_cpu(groups.cyclic_group, 4).matrices()) is not None


def test_sinkhorn():
    logits = on_cpu(torch.randn, 3, 5, 5, requires_grad=True)
    for P in (sinkhorn.sinkhorn(logits, 5), sinkhorn.sinkhorn(logits, 20, tol=1e-3), sinkhorn.ws_sinkhorn(logits, 5),
              sinkhorn.ws_sinkhorn(logits * 100, 5, max_range=1.0)):            # the last one takes the log-space fallback
        P.sum().backward()
        assert_cpu(P, logits.grad)
    assert_cpu(sinkhorn.sinkhorn_errors(logits.detach(), 3), sinkhorn.nearest_permutation(logits.detach(), as_matrix=True),
               sinkhorn.distance_to_permutation(logits.detach()))


# ---- layers and models ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reps", [None, "c4"])
def test_layers(reps):
    lift = on_cpu(layers.WSLiftConv2d, 1, 2, 3, 4, padding=1, representations=reps)
    gconv = on_cpu(layers.WSGroupConv2d, 2, 2, 3, 4, padding=1, padding_mode="circular", representations=reps)
    x = on_cpu(torch.randn, 2, 1, 6, 6)
    y = gconv(lift(x))
    (y.sum() + lift.entropy_loss() + gconv.normalization_loss()).backward()
    assert_cpu(y, layers.rotate_group_signal(y, 1), layers.group_pool(y), layers.invariant_pool(y, "max"))
    assert_cpu(lift.freeze()(x), lift.harden()(x))
    for cls, shape in ((layers.WSLiftConv1d, (2, 1, 5)), (layers.WSLiftConv3d, (1, 1, 3, 3, 3))):
        layer = on_cpu(cls, 1, 2, 3, 2)
        layer(on_cpu(torch.randn, *shape)).sum().backward()
    if reps is None:
        layers.set_representation_logits(lift, on_cpu(groups.rotation_group, 3).matrices(), noise=0.1)


@pytest.mark.parametrize("name", ["cnn", "gcnn", "wscnn"])
def test_digit_models(name):
    model = on_cpu(ws_mnist.make_digit_model, name, hidden=4, num_hidden=1, kernel_size=3)
    out = model(on_cpu(torch.randn, 2, 1, 8, 8))
    (out.sum() + models.ws_regularizer(0.1, 1e-3)(model)).backward()
    assert_cpu(out)


@pytest.mark.parametrize("name", ["cnn-8", "gcnn", "wscnn+norm+ent"])
def test_cifar_models(name):
    model = on_cpu(ws_cifar.make_cifar_model, name, hidden=4)
    reg = ws_cifar.cifar_regularizer(name)
    out = model(on_cpu(torch.randn, 2, 3, 8, 8))
    (out.sum() + (reg(model) if reg else 0)).backward()
    assert_cpu(out)


# ---- data ----------------------------------------------------------------------------------------------------------
def test_data():
    # the toy builders take no tensors: built like models, on the CPU (their groups come from symmetries.groups)
    for toy in (on_cpu(data.shift_toy, 6, "equivariant", n_samples=8), on_cpu(data.rotation_toy, 3, "invariant", n_samples=8),
                on_cpu(data.cube_toy, "equivariant", partial=True, n_samples=4),
                data.symmetry_toy(on_cpu(groups.cyclic_group, 4).matrices(), "invariant", n_samples=8)):
        assert_cpu(toy.x, toy.y, toy.elements, toy.params)
    x = on_cpu(torch.rand, 4, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    for out in (data.rotate_images(x, 30.), data.rotate_images(x, on_cpu(torch.rand, 4)), data.scale_images(x, 0.5),
                data.transform_digits(x, "rotated"), data.transform_digits(x, "scaled"), data.random_hflip(x, g)):
        assert_cpu(out)
    imgs, labels = data.offline_digits("sklearn", size=8)
    assert_cpu(imgs, labels)
    tr, te = data.mnist_variant("rotated", source="sklearn", n_train=20, n_test=10, size=8)
    assert_cpu(*tr.tensors, *te.tensors)
    assert_cpu(*data.fake_cifar10(4).tensors, data.cube_c4xc4_perms())


# ---- task distributions -----------------------------------------------------------------------------------------
def small_tasks(problem):
    kw = {"rank1": dict(n_tasks=20), "rank2": dict(n_tasks=20), "c4": dict(n_tasks=20, size=5),
          "d4": dict(n_tasks=20, size=5), "digits": dict(n_tasks=20, size=8, source="sklearn", queries=1)}[problem]
    return on_cpu(tasks.make_tasks, problem, **kw)


@pytest.mark.parametrize("problem", ["rank1", "rank2", "c4", "d4", "digits"])
def test_task_generators(problem):
    ts = small_tasks(problem)
    g = torch.Generator().manual_seed(0)
    for b in (ts.sample(3, "train", g), ts.sample(2, "test"), next(ts.test_batches(4, 2, seed=1))):
        assert_cpu(*b)


def test_task_helpers():
    x = on_cpu(torch.rand, 4, 1, 8, 8)
    assert_cpu(tasks.augment_images(x, torch.Generator().manual_seed(0)), tasks.augment_images(x, flip=False))
    psi = on_cpu(torch.randn, 2, 3, 3)
    g4 = on_cpu(groups.rotation_group, 3)
    assert_cpu(tasks.group_filter_bank(psi, g4), tasks.lifting_conv2d(x, psi, g4),
               tasks.per_task_conv2d(on_cpu(torch.randn, 2, 3, 1, 6, 6), on_cpu(torch.randn, 2, 4, 1, 3, 3)),
               tasks.locally_connected1d(on_cpu(torch.randn, 2, 7), on_cpu(torch.randn, 5, 3)))


# ---- meta-learning -----------------------------------------------------------------------------------------------
META_CASES = [("maml_fc", "rank1", {}), ("maml_lc", "rank2", {}), ("maml_conv", "rank1", {}), ("msr_fc", "rank2", {}),
              ("sinkhorn_fc", "rank1", {"n_iter": 3}), ("maml_conv2d", "c4", {}), ("msr_conv2d", "d4", {}),
              ("maml_convnet", "digits", {"hidden": 2, "layers": 2}), ("msr_convnet", "digits", {"hidden": 2, "layers": 2})]


@pytest.mark.parametrize("name,problem,kw", META_CASES, ids=[c[0] for c in META_CASES])
def test_meta(name, problem, kw):
    ts = small_tasks(problem)
    learner = on_cpu(lambda: meta.MSRMAML(meta_models.make_meta_model(name, ts, **kw), lr=0.1))
    batch = ts.sample(2, generator=torch.Generator().manual_seed(1))
    q = meta.query_losses_batched(learner, batch, steps=2)
    assert_cpu(q, meta.query_losses_l2l(learner, batch))
    q.sum().backward()
    assert_cpu(*meta.adapt_tasks(learner, batch, create_graph=False).values())
    hist = meta.meta_train(learner, ts, outer_steps=2, meta_batch=2, device="cpu", decay_from=0.5)
    assert len(hist["loss"]) == 2 and all(math.isfinite(v) for v in hist["loss"])
    res = meta.meta_test(learner, ts, n_tasks=3, batch_size=2, device="cpu")
    assert math.isfinite(res["mean"]) and res["losses"].device == CPU


def test_conv_band_mass():
    assert_cpu(analysis.conv_band_mass(on_cpu(torch.randn, 2, 5, 7)))


# ---- supervised training -----------------------------------------------------------------------------------------
def test_fit_and_evaluate(tmp_path):
    model = on_cpu(ws_mnist.make_digit_model, "wscnn", hidden=2, num_hidden=1, kernel_size=3)
    x, y = on_cpu(torch.randn, 12, 1, 8, 8), on_cpu(torch.randint, 10, (12,))
    ck = str(tmp_path / "ck.pt")
    kw = dict(batch_size=4, augment=data.random_hflip, scheduler="cosine", regularizer=models.ws_regularizer(0.1, 1e-3),
              device="cpu", checkpoint=ck, grad_clip=1.0, show_progress=False)
    hist = train.fit(model, (x, y), (x, y), epochs=2, **kw)
    assert len(hist) == 2
    assert len(train.fit(model, (x, y), (x, y), epochs=3, resume=True, **kw)) == 3
    assert_cpu(*next(train.batches((x, y), 4, shuffle=True, generator=torch.Generator().manual_seed(0))))
    ev = train.evaluate(model, (x, y), device="cpu")
    assert 0 <= ev["accuracy"] <= 1
    reg = on_cpu(torch.nn.Linear, 3, 1)
    train.fit(reg, (on_cpu(torch.randn, 8, 3), on_cpu(torch.randn, 8, 1)), epochs=1, loss_fn=F.mse_loss, device="cpu",
              show_progress=False)


# ---- analysis ----------------------------------------------------------------------------------------------------
def test_analysis():
    g = on_cpu(groups.cyclic_group, 4)
    R = on_cpu(lambda: g.matrices() * 0.9 + 0.1 / 4)
    fit = analysis.convex_fit(R, g)
    assert fit.error.max() < 0.2
    assert_cpu(*analysis.nearest_element(R, g))
    analysis.rep_error(R, g.matrices()); analysis.recovers_group(R, g); analysis.summarize(R, g)
    import matplotlib.pyplot as plt
    analysis.plot_reps_vs_group(R, g); analysis.plot_fit_coefficients(fit); analysis.plot_layer_reps({"a": R}); plt.close("all")


# ---- experiment runners at tiny sizes ----------------------------------------------------------------------------
def test_run_synthetic_table():
    out = msr_synthetic.run_synthetic_table(ranks=(1,), models=("maml_conv", "msr_fc"), outer_steps=2, meta_batch=2,
                                            test_tasks=4, device="cpu")
    assert set(out["rank1"]) == {"maml_conv", "msr_fc"}


def test_ws_toy_runners():
    for res in (ws_toys.run_shift_toy("equivariant", n=4, epochs=1, n_samples=16, n_test=8, device="cpu"),
                ws_toys.run_rotation_toy("invariant", k=3, epochs=1, n_samples=16, n_test=8, device="cpu"),
                ws_toys.run_cube_toy("equivariant", partial=True, epochs=1, n_samples=8, n_test=4, device="cpu")):
        assert math.isfinite(res["rep_error"]) and res["R"].device == CPU


def test_run_digits():
    # 24 training digits: the WSCNN starts at the group discovered in them, and the search needs at least 20 images
    accs = ws_mnist.run_digits(("cnn", "gcnn", "wscnn+norm+ent"), "rotated", "fast", device="cpu", source="sklearn",
                               size=8, n_train=24, n_test=8, epochs=1, hidden=2, num_hidden=1, kernel_size=3)
    assert all(0 <= a <= 1 for a in accs.values())


def test_discovery():
    # the search runs on the CPU (numpy and scipy) whatever the default device; the model keeps its own device. 40
    # random images, each turned by a random angle: the group found is D4 (order 8), the WSCNN gets |G| = 8 copies
    x = data.rotate_images(on_cpu(torch.rand, 40, 1, 10, 10), on_cpu(torch.rand, 40) * 360)
    found = discovery.discover_kernel_symmetry(x, kernel_size=3, seed=0)
    assert found.order > 1, found.describe()
    assert found.matrices().device == CPU and found.group_layer_matrices().device == CPU
    model = on_cpu(models.WSCNN, hidden_channels=2, num_hidden=1, kernel_size=3, group_size=found.order)
    discovery.apply_symmetry(model, found)
    assert all(p.device == CPU for p in model.parameters())
    for layer in (model.lift, model.convs[0]):
        assert analysis.learned_symmetry(layer, {"found": found.group})["equals"] == ["found"]


def test_run_cifar(monkeypatch):
    monkeypatch.setattr(ws_cifar, "cifar10_data", lambda *a, **k: (data.fake_cifar10(8), data.fake_cifar10(4, seed=1)))
    monkeypatch.setattr(ws_cifar, "make_cifar_model", lambda name, hidden=32: on_cpu(models.ResNet, hidden_channels=4)
                        if name.startswith("cnn") else on_cpu(models.WSResNet, hidden_channels=2, kernel_size=3))
    accs = ws_cifar.run_cifar(("cnn-4", "wscnn+norm"), flips=True, device="cpu", epochs=1, batch_size=4, show_progress=False)
    assert all(0 <= a <= 1 for a in accs.values())


@pytest.mark.parametrize("only", [["msr_synthetic", "rotated_digits"], ["ws_shift_toy"]])
def test_reproduce_tiny(tmp_path, only):
    # the main job's plumbing at the tiny budget (seconds of CPU)
    res = reproduce.reproduce(tmp_path, budget="tiny", only=only, device="cpu", quiet=True)
    assert set(only) <= set(res)


# ---- the model on another device than the data ----------------------------------------------------------------
# `meta` as the *model's* device (a stand-in for CUDA): the data stay on the CPU, so an entry point that does not move
# them to the model's device raises "Tensor on device cpu is not on the expected device meta", and a host sync on the
# hot path (`.item()`, `bool(tensor)`, `.cpu()`), which makes the CPU wait for the GPU, raises "cannot be called on meta".


@pytest.mark.parametrize("name,problem,kw", [
    c for c in META_CASES], ids=[c[0] for c in META_CASES])
def test_batch_follows_the_model(name, problem, kw):
    ts = small_tasks(problem)
    learner = on_cpu(lambda: meta.MSRMAML(meta_models.make_meta_model(name, ts, **kw), lr=0.1)).to("meta")
    batch = ts.sample(2, generator=torch.Generator().manual_seed(1))             # on the CPU
    q = meta.query_losses_batched(learner, batch, steps=2)
    assert q.device.type == "meta"
    q.sum().backward()
    assert meta.query_losses_l2l(learner, batch).device.type == "meta"
    assert all(p.device.type == "meta" for p in meta.adapt_tasks(learner, batch, create_graph=False).values())


@pytest.mark.parametrize("name", ["cnn", "gcnn", "wscnn"])
def test_models_without_host_syncs(name):
    model = on_cpu(ws_mnist.make_digit_model, name, hidden=4, num_hidden=1, kernel_size=3).to("meta")
    out = model(torch.randn(2, 1, 8, 8, device="meta"))
    out.sum().backward()


def test_cpu_generators_drive_augmentations_of_data_elsewhere():
    # fit's augmentation generator is a CPU generator; the batch is on the model's device
    x = torch.rand(4, 1, 8, 8, device="meta")
    for out in (tasks.augment_images(x, torch.Generator().manual_seed(0)), data.random_hflip(x, torch.Generator().manual_seed(0)),
                tasks.augment_images(x), data.random_hflip(x), data.rotate_images(x, 30.)):
        assert out.device.type == "meta"



# ---- real CUDA (skipped without a GPU; scripts/gpu_check.sh runs them there) ---------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: scripts/gpu_check.sh runs these on a GPU")


@cuda
@pytest.mark.parametrize("name,problem,kw", META_CASES, ids=[c[0] for c in META_CASES])
def test_cuda_meta(name, problem, kw):
    ts = small_tasks(problem)
    learner = meta.MSRMAML(meta_models.make_meta_model(name, ts, **kw), lr=0.1)
    hist = meta.meta_train(learner, ts, outer_steps=3, meta_batch=2, device="cuda", decay_from=0.5)
    assert all(math.isfinite(v) for v in hist["loss"])
    batch = ts.sample(2)                                                   # CPU batch, CUDA learner
    q = meta.query_losses_batched(learner, batch, steps=2)
    assert q.is_cuda and meta.query_losses_l2l(learner, batch).is_cuda
    res = meta.meta_test(learner, ts, n_tasks=3, batch_size=2, device="cuda")
    assert math.isfinite(res["mean"])


@cuda
def test_cuda_fit_evaluate():
    model = ws_mnist.make_digit_model("wscnn", hidden=2, num_hidden=1, kernel_size=3)
    x, y = torch.randn(12, 1, 8, 8), torch.randint(10, (12,))
    hist = train.fit(model, (x, y), (x, y), epochs=1, batch_size=4, augment=data.random_hflip, device="cuda",
                     regularizer=models.ws_regularizer(0.1, 1e-3), show_progress=False)
    assert next(model.parameters()).is_cuda and math.isfinite(hist.last["train_loss"])
    assert 0 <= train.evaluate(model, (x, y))["accuracy"] <= 1               # the model's device by default
    assert tasks.augment_images(torch.rand(3, 1, 8, 8, device="cuda"), torch.Generator().manual_seed(0)).is_cuda


@cuda
def test_cuda_runners(tmp_path):
    msr_synthetic.run_synthetic_table(ranks=(1,), models=("maml_conv", "msr_fc"), outer_steps=2, meta_batch=2, test_tasks=4,
                                      device="cuda")
    ws_toys.run_shift_toy("equivariant", n=4, epochs=1, n_samples=16, n_test=8, device="cuda")
    ws_mnist.run_digits(("cnn", "gcnn", "wscnn"), "rotated", "fast", device="cuda", source="sklearn", size=8, n_train=16,
                        n_test=8, epochs=1, hidden=2, num_hidden=1, kernel_size=3)
    res = reproduce.reproduce(tmp_path, budget="tiny", device="cuda", quiet=True)
    assert set(experiments.EXPERIMENTS) <= set(res)


def test_gpu_check_script(tmp_path):
    # without CUDA it refuses, saying why; its plumbing (a part, the log, the summary) works when told to run anyway
    import subprocess
    from conftest import ROOT
    env = {**__import__("os").environ, "GPU_CHECK_LOG": str(tmp_path / "gpu.log")}
    if not torch.cuda.is_available():
        res = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 3 and "no CUDA device" in res.stderr, res.stdout + res.stderr
        assert not (tmp_path / "gpu.log").exists()
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "env"], cwd=ROOT, timeout=600, capture_output=True,
                         text=True, env={**env, "GPU_CHECK_ALLOW_CPU": "1"})
    log = (tmp_path / "gpu.log").read_text()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "env: PASS" in log and "summary" in log and "| torch" in log, log[-2000:]


def test_gpu_check_runs_console_scripts_by_their_entry_point(tmp_path):
    # the offline GPU machine's bundle installs nbdev's scripts into its own bin/, not next to the interpreter: the
    # notebooks part must still run nbdev_test, with its arguments, for an interpreter whose folder has no nbdev_test
    import os, subprocess
    from conftest import ROOT
    py = tmp_path / "bin" / "python"; py.parent.mkdir()
    py.write_text(f'#!/bin/bash\nexec {sys.executable} "$@"\n'); py.chmod(0o755)
    env = {**os.environ, "GPU_CHECK_LOG": str(tmp_path / "gpu.log"), "GPU_CHECK_ALLOW_CPU": "1", "PYTHON": str(py)}
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "notebooks", "01_utils"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    log = (tmp_path / "gpu.log").read_text()
    assert res.returncode == 0 and "nbdev_test 01_utils: PASS" in log, res.stderr[-2000:] + log[-3000:]
    assert log.count("Starting ") == 1 and "01_utils.ipynb" in log, log[-3000:]     # its arguments reached it
