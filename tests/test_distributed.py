"""Data-parallel training on a CPU: two processes started by torchrun talk over the gloo backend. One launch runs every
scenario (starting processes costs more than the scenarios): `fit` on two ranks against `fit` in one process with the
same global batch, with AdamW and with plain SGD in its place (AdamW divides each step by the gradient's running scale,
so a gradient off by a constant factor hardly moves its result; SGD moves by the gradient itself), each rank's own
augmentation stream, a two-rank run interrupted and resumed against an uninterrupted one, a checkpoint resumed on
another number of processes, WSCNNs with learned and with fixed representations under DDP, `meta_train` with each
meta-batch split over the two ranks against one process, and a NaN that only one rank meets, which must stop every
rank at the same step. Each rank writes what it measured; the tests below read it.

The tolerances come from the honest difference: the same training in one process and on two ranks differs only by the
order of floating-point sums (the gradient all-reduce, the shares of a batch). Measured on 2026-12-04 (torch 2.14.1,
2-core CPU, this file's worker run under torchrun with its report printed), the largest parameter difference: `fit`
6.0e-8 with AdamW and 1.5e-8 with SGD (the history's numbers 1.3e-7 relative), WSCNN 1.2e-7, GCNN 3.0e-8, `meta_train`
1.9e-9 with SGD. `TOLERANCE` is 1e-6, about eight times the largest; a gradient halved on every rank (a share's loss
weight off by the world size) moves the AdamW `fit` by 3.0e-6, the WSCNN by 1.6e-5 and the SGD `fit` by 4.6e-2.
`meta_train` with Adam differs by 1.4e-6: Adam divides by the root of each entry's squared-gradient average, and for
entries whose gradient is almost zero that quotient turns rounding into a visible step; it gets `ADAM_META_TOLERANCE`,
and its SGD twin the tight one."""
import json, sys, textwrap

import pytest

from conftest import ROOT, run

# one torchrun launch serves every test here: in one group, pytest-xdist (`--dist loadgroup`, as `make test` runs it)
# sends them all to one worker, which launches it once
pytestmark = pytest.mark.xdist_group("torchrun_scenarios")

WORKER = textwrap.dedent('''
    import json, os, sys
    import torch, torch.nn as nn, torch.distributed as dist
    from symmetries.distributed import data_parallel
    from symmetries.train import fit, load_checkpoint, NonFiniteLossError
    from symmetries.models import WSCNN, GCNN, ws_regularizer
    from symmetries.meta import MSRMAML, meta_train
    from symmetries.meta_models import make_meta_model
    from symmetries.tasks import make_tasks

    out, report = sys.argv[1], {}
    dp = data_parallel()                       # joins the group torchrun describes
    report["place"] = [dp.rank, dp.world_size]
    torch.manual_seed(0)
    X = torch.randn(204, 6); Y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 0.5).long()
    train, valid = (X[:151], Y[:151]), (X[151:], Y[151:])      # 151 = 4 x 32 + 23 and 53: shares of unequal sizes
    def net():
        torch.manual_seed(1); return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    def max_diff(a, b): return max((x - y).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    def rows(h): return [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    kw = dict(epochs=3, batch_size=32, lr=3e-2, weight_decay=1e-3, scheduler="cosine", seed=5, device="cpu", show_progress=False)

    # 1. two ranks = one process with the same global batch (no augmentation)
    alone, together = net(), net()
    h1 = fit(alone, train, valid, distributed=False, **kw)
    h2 = fit(together, train, valid, **kw)
    report["fit_param_diff"] = max_diff(alone, together)
    report["fit_moved"] = max_diff(alone, net())
    report["history_one"], report["history_two"] = rows(h1), rows(h2)

    # 1b. the same with plain SGD in AdamW's place: here a gradient off by a constant factor shows in the weights
    class PlainSGD(torch.optim.SGD):
        def __init__(self, params, lr): super().__init__(params, lr=lr)
    adamw, torch.optim.AdamW = torch.optim.AdamW, PlainSGD
    try:
        alone, together = net(), net()
        sgd = {**kw, "lr": 0.1, "weight_decay": 0.0}
        fit(alone, train, valid, distributed=False, **sgd); fit(together, train, valid, **sgd)
        report["sgd_used"] = fit.__globals__["torch"].optim.AdamW is PlainSGD      # what fit builds its optimiser from
    finally: torch.optim.AdamW = adamw
    report["sgd_param_diff"] = max_diff(alone, together)
    report["sgd_moved"] = max_diff(alone, net())

    # 1c. augmentation: each rank draws from its own stream; rank 0 from the one a single process draws from
    def recording(draws):
        def augment(xb, generator): draws.append(torch.rand(2, generator=generator).tolist()); return xb
        return augment
    one_draws, my_draws = [], []
    fit(net(), train, augment=recording(one_draws), distributed=False, **{**kw, "epochs": 2})
    fit(net(), train, augment=recording(my_draws), **{**kw, "epochs": 2})
    report["aug_draws_alone"], report["aug_draws"] = one_draws, my_draws

    # 2. interrupted two-rank run (a regulariser that raises on every rank mid-epoch 2) resumed, against an uninterrupted one
    ck = os.path.join(out, "run.pt")
    aug = lambda xb, generator: xb + 0.05 * torch.randn(xb.shape, generator=generator)
    kw2 = {**kw, "augment": aug, "regularizer": lambda m: 1e-3 * sum(p.pow(2).sum() for p in m.parameters())}
    straight = net(); hs = fit(straight, train, valid, **kw2)
    class Stop(Exception): pass
    calls = [0]
    def stopping(m):
        calls[0] += 1
        if calls[0] > 7: raise Stop()
        return kw2["regularizer"](m)
    try: fit(net(), train, valid, checkpoint=ck, **{**kw2, "regularizer": stopping}); report["interrupted"] = False
    except Stop: report["interrupted"] = True
    dist.barrier()
    report["checkpoint_epoch"] = load_checkpoint(ck)["epoch"]
    torch.manual_seed(99); resumed = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    hr = fit(resumed, train, valid, checkpoint=ck, resume=True, **kw2)
    report["resume_param_diff"] = max_diff(straight, resumed)
    report["resume_history_equal"] = rows(hs) == rows(hr)

    # 3. a checkpoint of one process resumed on two: refused, on every rank
    ck1 = os.path.join(out, f"one_{dp.rank}.pt")
    fit(net(), train, checkpoint=ck1, distributed=False, **{**kw, "epochs": 1})
    try: fit(net(), train, checkpoint=ck1, resume=True, **kw); report["world_mismatch"] = None
    except ValueError as e: report["world_mismatch"] = str(e)

    # 4. WSCNNs under DDP: learned representations with both regularisers, and fixed ones (no representation parameters)
    digits = (torch.randn(40, 1, 9, 9, generator=torch.Generator().manual_seed(2)), torch.arange(40) % 10)
    for name, make in (("wscnn", lambda: WSCNN(hidden_channels=4, kernel_size=3, num_hidden=1)),
                       ("gcnn", lambda: GCNN(hidden_channels=4, kernel_size=3, num_hidden=1))):
        kw3 = dict(epochs=1, batch_size=16, lr=1e-2, seed=0, device="cpu", show_progress=False,
                   regularizer=ws_regularizer(norm_weight=0.1, entropy_weight=0.01))
        torch.manual_seed(3); a = make(); torch.manual_seed(3); b = make()
        fit(a, digits, digits, distributed=False, **kw3); fit(b, digits, digits, **kw3)
        report[name + "_param_diff"] = max_diff(a, b)
        torch.manual_seed(3); report[name + "_moved"] = max_diff(a, make())

    # 5. meta_train: a meta-batch of 5 tasks split 2 + 3 over the ranks, against one process on all 5
    tasks = make_tasks("rank1", n_tasks=40)
    def learner():
        torch.manual_seed(4); return MSRMAML(make_meta_model("msr_fc", tasks), lr=0.1)
    m1, m2, m0 = learner(), learner(), learner()
    kw4 = dict(outer_steps=4, meta_batch=5, outer_lr=1e-2, seed=2, device="cpu", decay_from=0.5)
    r1 = meta_train(m1, tasks, distributed=False, **kw4); r2 = meta_train(m2, tasks, **kw4)
    report["meta_param_diff"], report["meta_moved"] = max_diff(m1, m2), max_diff(m1, m0)
    report["meta_losses"] = [r1["loss"], r2["loss"]]
    adam, torch.optim.Adam = torch.optim.Adam, PlainSGD          # 5b. the same with plain SGD as the outer optimiser
    try:
        m1, m2 = learner(), learner()
        meta_train(m1, tasks, distributed=False, **{**kw4, "outer_lr": 0.1})
        meta_train(m2, tasks, **{**kw4, "outer_lr": 0.1})
        report["meta_sgd_used"] = meta_train.__globals__["torch"].optim.Adam is PlainSGD
    finally: torch.optim.Adam = adam
    report["meta_sgd_param_diff"], report["meta_sgd_moved"] = max_diff(m1, m2), max_diff(m1, m0)
    try: meta_train(learner(), tasks, **{**kw4, "meta_batch": 1}); report["meta_batch_refused"] = None
    except ValueError as e: report["meta_batch_refused"] = str(e)

    # 6. a NaN that rank 1 alone meets (in its share of step 3 of epoch 2) stops both ranks there, with one message
    steps = -(-len(train[0]) // kw["batch_size"])
    calls = [0]
    def poisoned(xb, generator):
        calls[0] += 1
        if calls[0] == steps + 3 and dp.rank == 1: xb = xb.clone(); xb[0, 0] = float("nan")
        return xb
    ck_nan = os.path.join(out, "nan.pt")
    try: fit(net(), train, valid, augment=poisoned, checkpoint=ck_nan, **kw); report["nan_stop"] = None
    except NonFiniteLossError as e: report["nan_stop"] = str(e)
    saved = load_checkpoint(ck_nan)
    report["nan_checkpoint"] = [saved["epoch"], all(bool(t.isfinite().all()) for t in saved["model"].values())]
    with open(os.path.join(out, f"rank{dp.rank}.json"), "w") as f: json.dump(report, f)
''')


@pytest.fixture(scope="session")
def reports(tmp_path_factory):
    "What each of the two ranks measured (one torchrun launch for every test in this file)."
    # session scope: a module fixture is torn down whenever the worker's next test comes from another file
    out = tmp_path_factory.mktemp("ddp")
    script = out / "worker.py"; script.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(out)]
    res = run(cmd, timeout=300, env={"OMP_NUM_THREADS": "1", "SYMMETRIES_QUIET": "1", "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


TOLERANCE = 1e-6               # about eight times the largest honest difference measured (see above)
ADAM_META_TOLERANCE = 1e-5     # meta_train with Adam: about seven times its honest 1.4e-6


def test_ranks(reports):
    assert [r["place"] for r in reports] == [[0, 2], [1, 2]]


def test_fit_two_ranks_equals_one_process(reports):
    for r in reports:
        assert r["fit_moved"] > 1e-2            # training changed the weights, so equality below means something
        assert r["fit_param_diff"] < TOLERANCE, r["fit_param_diff"]
        for one, two in zip(r["history_one"], r["history_two"]):
            assert one.keys() == two.keys()
            for k in one: assert one[k] == pytest.approx(two[k], rel=TOLERANCE, abs=TOLERANCE), (k, one, two)
    assert reports[0]["history_two"] == reports[1]["history_two"]     # exact sums: every rank reports the same numbers


def test_fit_two_ranks_equals_one_process_with_plain_sgd(reports):
    "Without Adam's normalisation a gradient scale shows: two ranks must take the one-process steps themselves."
    for r in reports:
        assert r["sgd_used"] and r["sgd_moved"] > 1e-2, r["sgd_moved"]
        assert r["sgd_param_diff"] < TOLERANCE, r["sgd_param_diff"]


def test_each_rank_augments_with_its_own_stream(reports):
    "Rank 0 draws what one process draws; rank 1 draws from a stream of its own, not a copy of rank 0's."
    alone, zero, one = reports[0]["aug_draws_alone"], reports[0]["aug_draws"], reports[1]["aug_draws"]
    assert len(zero) == len(one) == len(alone) == 2 * 5          # one draw per step: 2 epochs of 5 global batches
    assert zero == alone
    assert not {tuple(d) for d in zero} & {tuple(d) for d in one}, (zero, one)


def test_interrupted_two_rank_run_resumes_exactly(reports):
    for r in reports:
        assert r["interrupted"] and r["checkpoint_epoch"] == 1
        assert r["resume_param_diff"] == 0.0 and r["resume_history_equal"]


def test_other_world_size_is_refused(reports):
    for r in reports:
        assert r["world_mismatch"] and "1 process(es), this run has 2" in r["world_mismatch"]


def test_ws_models_under_ddp(reports):
    for r in reports:
        assert r["wscnn_moved"] > 1e-3 and r["gcnn_moved"] > 1e-3, r
        assert r["wscnn_param_diff"] < TOLERANCE and r["gcnn_param_diff"] < TOLERANCE, r


def test_meta_train_two_ranks_equals_one_process(reports):
    for r in reports:
        assert r["meta_moved"] > 1e-3, r["meta_moved"]
        assert r["meta_param_diff"] < ADAM_META_TOLERANCE, r["meta_param_diff"]
        assert r["meta_losses"][0] == pytest.approx(r["meta_losses"][1], rel=TOLERANCE)
        assert r["meta_sgd_used"] and r["meta_sgd_moved"] > 1e-3, r["meta_sgd_moved"]
        assert r["meta_sgd_param_diff"] < TOLERANCE, r["meta_sgd_param_diff"]
        assert "meta_batch must be at least the number of processes (2)" in r["meta_batch_refused"]


def test_nan_on_one_rank_stops_every_rank_at_its_step(reports):
    "Rank 1 alone meets the NaN; both ranks stop with the same message, naming that step; the checkpoint stays finite."
    stops = [r["nan_stop"] for r in reports]
    assert stops[0] is not None and stops[0] == stops[1], stops
    assert stops[0].startswith("the training loss is not finite at epoch 2 of 3, step 3 of 5: training stopped."), stops
    assert "still holds the last finite epoch (1)" in stops[0]
    assert all(r["nan_checkpoint"] == [1, True] for r in reports), [r["nan_checkpoint"] for r in reports]


def test_nan_stops_one_process_before_the_step():
    "In one process the loss is checked at every step: fit stops at the NaN's step and the weights stay finite."
    import torch, torch.nn as nn
    from symmetries.train import NonFiniteLossError, fit
    torch.manual_seed(0)
    X = torch.randn(96, 6); Y = (X[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    calls = [0]
    def poisoned(xb, generator):
        calls[0] += 1
        if calls[0] == 3 + 2: xb = xb.clone(); xb[0, 0] = float("nan")          # step 2 of epoch 2
        return xb
    stopped = r"the training loss is not finite \(nan\) at epoch 2 of 3, step 2 of 3"
    with pytest.raises(NonFiniteLossError, match=stopped):
        fit(model, (X, Y), epochs=3, batch_size=32, augment=poisoned, device="cpu", show_progress=False)
    assert all(bool(p.isfinite().all()) for p in model.parameters())


def test_one_process_never_sets_up_torch_distributed(monkeypatch):
    import torch, torch.distributed as dist
    from symmetries.distributed import data_parallel
    from symmetries.train import fit
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"): monkeypatch.delenv(var, raising=False)
    assert data_parallel() is None and data_parallel(False) is None
    with pytest.raises(ValueError, match="launch with torchrun"):
        fit(torch.nn.Linear(3, 2), (torch.randn(4, 3), torch.arange(4) % 2), distributed=True, show_progress=False)
    fit(torch.nn.Linear(3, 2), (torch.randn(4, 3), torch.arange(4) % 2), device="cpu", show_progress=False)
    assert not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an int"): data_parallel()
