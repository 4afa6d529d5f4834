"""Data-parallel training on a CPU: two processes started by torchrun talk over the gloo backend. One launch runs every
scenario (starting processes costs more than the scenarios): `fit` on two ranks against `fit` in one process with the
same global batch, a two-rank run interrupted and resumed against an uninterrupted one, a checkpoint resumed on another
number of processes, WSCNNs with learned and with fixed representations under DDP, and `meta_train` with each
meta-batch split over the two ranks against one process. Each rank writes what it measured;
the tests below read it."""
import json, os, sys, textwrap

import pytest

from conftest import ROOT, run

WORKER = textwrap.dedent('''
    import json, os, sys
    import torch, torch.nn as nn, torch.distributed as dist
    from symmetries.distributed import data_parallel
    from symmetries.train import fit, load_checkpoint
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
    try: meta_train(learner(), tasks, **{**kw4, "meta_batch": 1}); report["meta_batch_refused"] = None
    except ValueError as e: report["meta_batch_refused"] = str(e)
    with open(os.path.join(out, f"rank{dp.rank}.json"), "w") as f: json.dump(report, f)
''')


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    "What each of the two ranks measured (one torchrun launch for every test in this file)."
    out = tmp_path_factory.mktemp("ddp")
    script = out / "worker.py"; script.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(out)]
    res = run(cmd, timeout=300, env={"OMP_NUM_THREADS": "1", "SYMMETRIES_QUIET": "1", "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_ranks(reports):
    assert [r["place"] for r in reports] == [[0, 2], [1, 2]]


def test_fit_two_ranks_equals_one_process(reports):
    for r in reports:
        assert r["fit_moved"] > 1e-2            # training changed the weights, so equality below means something
        assert r["fit_param_diff"] < 1e-5, r["fit_param_diff"]
        for one, two in zip(r["history_one"], r["history_two"]):
            assert one.keys() == two.keys()
            for k in one: assert one[k] == pytest.approx(two[k], rel=1e-5, abs=1e-6), (k, one, two)
    assert reports[0]["history_two"] == reports[1]["history_two"]     # exact sums: every rank reports the same numbers


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
        assert r["wscnn_param_diff"] < 1e-5 and r["gcnn_param_diff"] < 1e-5, r


def test_meta_train_two_ranks_equals_one_process(reports):
    for r in reports:
        assert r["meta_moved"] > 1e-3, r["meta_moved"]
        assert r["meta_param_diff"] < 1e-5, r["meta_param_diff"]
        assert r["meta_losses"][0] == pytest.approx(r["meta_losses"][1], rel=1e-5)
        assert "meta_batch must be at least the number of processes (2)" in r["meta_batch_refused"]


def test_one_process_never_sets_up_torch_distributed(monkeypatch):
    import torch, torch.distributed as dist
    from symmetries.distributed import data_parallel
    from symmetries.train import fit
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"): monkeypatch.delenv(var, raising=False)
    assert data_parallel() is None and data_parallel(False) is None
    with pytest.raises(ValueError, match="launch with torchrun"): fit(torch.nn.Linear(3, 2), (torch.randn(4, 3), torch.arange(4) % 2),
                                                                      distributed=True, show_progress=False)
    fit(torch.nn.Linear(3, 2), (torch.randn(4, 3), torch.arange(4) % 2), device="cpu", show_progress=False)
    assert not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an int"): data_parallel()
