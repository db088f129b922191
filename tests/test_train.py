"""The training loop: determinism, resume, Ctrl-C, NaN, init-from, the metrics log and DDP under torchrun."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, assert_usage_error, cli_env, run_cli
from safetensors.torch import load_file


def _weights(path):
    return load_file(str(path))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _loop_state(path):
    from lstmtext.checkpoint import read_meta

    return read_meta(path)["loop"]


def test_train_same_seed_same_model_and_metrics_log(tmp_path):
    a, b, c = tmp_path / "a.ckpt", tmp_path / "b.ckpt", tmp_path / "c.ckpt"
    for out, seed in ((a, 7), (b, 7), (c, 8)):
        proc = run_cli("train", "sentiment", "-o", out, "--epochs", "2", "--seed", seed, "-q", *TINY)
        assert proc.returncode == 0, proc.stderr
    assert _same(_weights(a), _weights(b))
    assert not _same(_weights(a), _weights(c))
    log = [json.loads(l) for l in (tmp_path / "a.metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1.0, 2.0]
    assert all("dev_accuracy" in r and r["tokens_per_s"] > 0 for r in log)


def test_train_resume_continues_exactly(tmp_path):
    full, part = tmp_path / "full.ckpt", tmp_path / "part.ckpt"
    args = ["--epochs", "2", "-q", "--set", "train.eval_every=5", *TINY]
    assert run_cli("train", "sentiment", "-o", full, *args).returncode == 0
    first = run_cli("train", "sentiment", "-o", part, *args, "--set", "train.max_steps=7")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "part.resume.safetensors").exists()
    second = run_cli("train", "sentiment", "-o", part, "--resume", "-q", "--set", "train.max_steps=0")
    assert second.returncode == 0, second.stderr
    assert _same(_weights(full), _weights(part))
    assert _same(_weights(tmp_path / "full.resume.safetensors"), _weights(tmp_path / "part.resume.safetensors"))
    assert_usage_error(run_cli("train", "sentiment", "-o", tmp_path / "new.ckpt", "--resume"), "no resume state")


def test_train_real_ctrl_c_resumes_exactly(tmp_path):
    """A real SIGINT in a running CLI training: exit 130 with the --resume hint, and the resumed run reaches the
    uninterrupted run's state bit for bit (both stop at train.max_steps=150)."""
    ref, out = tmp_path / "ref.ckpt", tmp_path / "m.ckpt"
    args = ["--epochs", "200", "-q", *TINY, "--set", "train.eval_every=3", "--set", "train.patience=0"]
    assert run_cli("train", "sentiment", "-o", ref, *args, "--set", "train.max_steps=150").returncode == 0
    # patience 0: the run cannot stop early before the signal comes. SIGINT's default disposition is set
    # explicitly for the child: a suite started in the background by a non-interactive shell (`pytest &`)
    # ignores SIGINT, children inherit that, and Python then never turns SIGINT into KeyboardInterrupt.
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstmtext", "train", "sentiment", "-o", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    log = tmp_path / "m.metrics.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    step = _loop_state(tmp_path / "m.resume.safetensors")["step"]
    assert 6 <= step < 150 and f"interrupted at step {step};" in err
    again = run_cli("train", "sentiment", "-o", out, "--resume", "-q", "--set", "train.max_steps=150")
    assert again.returncode == 0, again.stderr
    assert _same(_weights(ref), _weights(out))
    assert _same(_weights(tmp_path / "ref.resume.safetensors"), _weights(tmp_path / "m.resume.safetensors"))


def test_train_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import lstmtext.training.loop as loop
    from lstmtext.errors import TrainingStopped
    from lstmtext.training import train

    real_step = loop.train_step
    calls = []

    def diverging(*args, **kwargs):  # a run whose loss turns NaN at its 6th step
        calls.append(1)
        if len(calls) >= 6:
            return torch.tensor(float("nan")), False
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", diverging)
    out = tmp_path / "m.ckpt"
    overrides = [a for a in TINY if a != "--set"] + ["train.eval_every=2", "train.epochs=5"]
    with pytest.raises(TrainingStopped, match=r"NaN or infinite at step 6.*last good checkpoint .*m.ckpt is kept"):
        train("sentiment", overrides=overrides, out=out, show_progress=False)
    log = [json.loads(l) for l in (tmp_path / "m.metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]  # the checkpoint is from before the divergence
    assert run_cli("info", out, "--format", "json").returncode == 0


def test_train_init_from_copies_encoder_and_refuses_misfit(sentiment_ckpt, tmp_path):
    out = tmp_path / "m.ckpt"
    ok = run_cli("train", "sentiment", "-o", out, "--init-from", sentiment_ckpt, "--epochs", "1", *TINY)
    assert ok.returncode == 0, ok.stderr
    assert "copied" in ok.stderr
    misfit = run_cli(
        "train",
        "sentiment",
        "-o",
        tmp_path / "x.ckpt",
        "--init-from",
        sentiment_ckpt,
        *TINY,
        "--set",
        "encoder.hidden_dim=48",
        "-q",
    )
    assert_usage_error(misfit, "--init-from", "encoder")


def test_train_gru_cell_trains_through_the_same_code(tmp_path):
    out = tmp_path / "gru.ckpt"
    proc = run_cli("train", "sentiment", "-o", out, "--epochs", "1", "-q", *TINY, "--set", "encoder.cell=gru")
    assert proc.returncode == 0, proc.stderr
    assert any("fwd.weight_hh_l0" in k and v.shape[0] == 3 * 32 for k, v in _weights(out).items())


def test_train_unknown_task_and_recipe_key_are_usage_errors():
    assert_usage_error(run_cli("train", "sentimnet"), "'sentimnet' is not one of", "'sentiment'")
    assert_usage_error(run_cli("train", "sentiment", "--set", "train.learning_rate=1"), "unknown key 'learning_rate'")
    assert_usage_error(run_cli("train", "sentiment", "--set", "train.ema=1"), "train.ema", "0.999")


def test_train_weight_average_ramps_up_and_swaps_back():
    from lstmtext.training.build import WeightAverage

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    avg = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    avg.update()  # first decay is min(0.9, 2/11): the average moves 9/11 of the way
    assert torch.allclose(avg.shadow[0], torch.full((1, 2), 9 / 11))
    with avg.applied():
        assert torch.allclose(model.weight, torch.full((1, 2), 9 / 11))
    assert torch.equal(model.weight, torch.ones(1, 2))
    for _ in range(200):
        avg.update()
    assert torch.allclose(avg.shadow[0], torch.ones(1, 2), atol=1e-6)


def test_train_ema_checkpoint_holds_the_average_and_resume_keeps_it(tmp_path):
    full, part = tmp_path / "full.ckpt", tmp_path / "part.ckpt"
    args = ["--epochs", "1", "-q", "--set", "train.ema=0.9", *TINY]
    assert run_cli("train", "sentiment", "-o", full, *args).returncode == 0
    saved, state = _weights(full), _weights(tmp_path / "full.resume.safetensors")
    # one evaluation (end of the epoch), so the checkpoint is the average at the last step, not the raw weights
    assert _same(saved, {k[len("ema.") :]: v for k, v in state.items() if k.startswith("ema.")})
    assert not _same(saved, {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    first = run_cli("train", "sentiment", "-o", part, *args, "--set", "train.max_steps=4")
    assert first.returncode == 0, first.stderr
    second = run_cli("train", "sentiment", "-o", part, "--resume", "-q", "--set", "train.max_steps=0")
    assert second.returncode == 0, second.stderr
    assert _same(saved, _weights(part))


def test_train_ranks_split_each_epochs_batches_without_overlap():
    """loop.epoch_batches under two processes: each epoch's batches of one process, minus the odd one out, dealt
    alternately, so the ranks train on disjoint examples and the same number of steps."""
    from types import SimpleNamespace

    from lstmtext.training.distributed import Dist
    from lstmtext.training.loop import epoch_batches

    lengths = [3 + (i * 7) % 23 for i in range(301)]
    recipe = SimpleNamespace(train=SimpleNamespace(batch_tokens=120, max_batch_size=16, seed=5))
    one, two = Dist(), [Dist(rank, 2) for rank in range(2)]

    def plan(d, epoch):
        return [b.tolist() for b in epoch_batches(None, None, lengths, recipe, epoch, d)]

    for epoch in range(4):
        alone = plan(one, epoch)
        r0, r1 = (plan(d, epoch) for d in two)
        assert len(alone) > 10 and len(r0) == len(r1) == len(alone) // 2
        assert sorted(r0 + r1) == sorted(alone[: len(alone) // 2 * 2])
        assert not {i for b in r0 for i in b} & {i for b in r1 for i in b}
    # every epoch deals another order
    assert plan(two[0], 1) != r0


TORCHRUN = Path(sys.executable).parent / "torchrun"  # beside the interpreter: the venv's, on CI too


FASTEST = ["--set", "train.precision=fastest"]


@pytest.mark.skipif(not TORCHRUN.exists(), reason=f"torchrun missing: no {TORCHRUN} beside this Python")
@pytest.mark.parametrize(
    "extra",
    [[], ["--set", "train.sparse_embeddings=true"], FASTEST],
    ids=["dense", "sparse-embeddings", "precision-fastest"],
)
def test_train_distributed_two_cpu_processes(tmp_path, extra):
    """One torchrun launch of two CPU ranks: they train on disjoint halves of every epoch's batches, end with
    identical weights (DDP keeps them in sync; with train.sparse_embeddings each rank's batches use other rows,
    so the embedding stays in sync only if DDP sums the sparse gradients too), and only rank 0 writes the
    checkpoint and the log. With train.precision fastest, rank 0 times and every rank trains in its choice
    (ddp_probe.py makes rank 1's own timing disagree)."""
    out = tmp_path / "ddp.ckpt"
    proc = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(REPO / "tests" / "ddp_probe.py"),
            str(tmp_path),
            "train",
            "sentiment",
            "-o",
            str(out),
            "--epochs",
            "2",
            *TINY,
            *extra,
        ],
        capture_output=True,
        text=True,
        env=cli_env(**({"DDP_PROBE_FASTEST": "1"} if extra == FASTEST else {})),
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone prints: each note and evaluation line once
    lines = proc.stderr.splitlines()
    notes = ["sentiment: 1600 training examples", "  step ", "finished after", "best validation accuracy"]
    for start in notes + (["train.precision fastest: fp32"] if extra == FASTEST else []):
        assert sum(line.startswith(start) for line in lines) == 1, (start, proc.stderr[-3000:])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["lengths"] == ranks[1]["lengths"]  # the same features, so indices mean the same examples
    assert {r["optimizer"] for r in ranks} == {"DenseSparseAdamW" if "sparse" in str(extra) else "AdamW"}
    assert {r["precision"] for r in ranks} == {"fp32"}
    assert ranks[0]["one_process"] == ranks[1]["one_process"] and sorted(ranks[0]["one_process"]) == ["0", "1"]
    for epoch, alone in ranks[0]["one_process"].items():
        trained = [[b for e, b in r["steps"] if e == int(epoch)] for r in ranks]
        assert len(trained[0]) == len(trained[1]) == len(alone) // 2 > 0
        assert sorted(trained[0] + trained[1]) == sorted(alone[: len(alone) // 2 * 2])
        assert not {i for b in trained[0] for i in b} & {i for b in trained[1] for i in b}
    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert _same(w0, w1)
    meta = json.loads(run_cli("info", out, "--format", "json").stdout)
    assert meta["provenance"]["world_size"] == 2
    log = (tmp_path / "ddp.metrics.jsonl").read_text().splitlines()
    assert len(log) == 2  # only rank 0 writes: one row per evaluation, not two
    assert run_cli("predict", out, input="a wonderful film .\n").returncode == 0


def test_train_param_groups_scale_the_encoder_lr_and_cover_every_parameter_once():
    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import sentiment
    from lstmtext.training.build import param_groups

    recipe = resolve_recipe(
        "sentiment", None, ["encoder.embed_dim=8", "encoder.hidden_dim=8", "sentiment.hidden_dim=8"]
    )
    model = sentiment.build_model(recipe, 300, ["neg", "pos"])
    groups = param_groups(model, weight_decay=0.01, encoder_lr_scale=0.25)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    encoder = {id(p) for p in model.encoder.parameters()}
    for g in groups:
        in_encoder = {id(p) in encoder for p in g["params"]}
        assert len(in_encoder) == 1  # a group is all encoder or all head
        assert g["lr_scale"] == (0.25 if in_encoder == {True} else 1.0)
    embed = model.encoder.embed.weight
    assert next(g for g in groups if any(p is embed for p in g["params"]))["weight_decay"] == 0.0


def test_train_fused_adamw_steps_as_the_foreach_one_and_takes_its_resume_state():
    """make_optimizer's fused AdamW is the same algorithm as the foreach AdamW it replaced: identical gradients
    give the same weights. A resume state keeps the kernel it was written with (its param groups say which), so
    a run resumed from an older, foreach state continues exactly as it would have, and a fused one stays fused."""
    import copy

    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import sentiment
    from lstmtext.training.build import make_optimizer, param_groups

    recipe = resolve_recipe(
        "sentiment", None, ["encoder.embed_dim=8", "encoder.hidden_dim=8", "sentiment.hidden_dim=8", "train.lr=0.01"]
    )
    torch.manual_seed(0)
    ref = sentiment.build_model(recipe, 50, ["neg", "pos"])
    ref.eval()  # no dropout: both models see the same gradients
    new = copy.deepcopy(ref)
    start = copy.deepcopy(ref.state_dict())
    tc = recipe.train
    ref_opt = torch.optim.AdamW(param_groups(ref, tc.weight_decay), lr=tc.lr, foreach=True)
    new_opt = make_optimizer(new, tc, torch.device("cpu"))
    assert new_opt.defaults["fused"] is True
    batch = {
        "tokens": torch.randint(1, 50, (3, 7)),
        "lengths": torch.tensor([7, 5, 2]),
        "labels": torch.tensor([0, 1, 1]),
    }

    def step(model, opt):
        opt.zero_grad(set_to_none=True)
        model(batch)[1].backward()
        opt.step()

    for _ in range(3):
        step(ref, ref_opt)
        step(new, new_opt)
    for (name, a), b in zip(ref.named_parameters(), new.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
        assert not torch.equal(a, start[name]), name  # every parameter moved, so the comparison means something
    resumed = make_optimizer(new, tc, torch.device("cpu"))
    # the foreach optimizer's state, copied as an older resume file holds it (state_dict() shares its tensors)
    resumed.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
    assert (resumed.param_groups[0]["foreach"], resumed.param_groups[0]["fused"]) == (True, None)
    again = make_optimizer(new, tc, torch.device("cpu"))
    again.load_state_dict(copy.deepcopy(new_opt.state_dict()))
    assert again.param_groups[0]["fused"] is True
    new.load_state_dict(ref.state_dict())
    step(ref, ref_opt)
    step(new, resumed)
    for (name, a), b in zip(ref.named_parameters(), new.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_train_encoder_lr_scale_zero_freezes_an_init_from_encoder(sentiment_ckpt, tmp_path):
    before = _weights(sentiment_ckpt)
    enc = [k for k in before if k.startswith("encoder.")]
    for scale, frozen in (("0", True), ("1", False)):
        out = tmp_path / f"scale{scale}.ckpt"
        proc = run_cli(
            "train",
            "sentiment",
            "-o",
            out,
            "--init-from",
            sentiment_ckpt,
            "--epochs",
            "1",
            "-q",
            *TINY,
            "--set",
            f"train.encoder_lr_scale={scale}",
            "--set",
            "train.weight_decay=0",
        )
        assert proc.returncode == 0, proc.stderr
        after = _weights(out)
        assert enc and all(torch.equal(before[k], after[k]) for k in enc) == frozen, scale


def test_train_bf16_autocast_on_cpu_trains_in_bf16_and_fp16_is_refused():
    """precision=bf16 on CPU runs the encoder's matmuls in bf16 (weights and gradients stay fp32); fp16 on CPU,
    which would need a GradScaler, is a usage error."""
    from lstmtext.config import resolve_recipe
    from lstmtext.device import autocast_for
    from lstmtext.errors import UsageError
    from lstmtext.tasks import lm
    from lstmtext.training.loop import train_step

    cpu = torch.device("cpu")
    autocast, scaler = autocast_for(cpu, "bf16")
    assert scaler is None
    recipe = resolve_recipe("lm", None, ["encoder.embed_dim=16", "encoder.hidden_dim=16"])
    torch.manual_seed(0)
    model = lm.build_model(recipe, 300, [])
    batch = {"tokens": torch.randint(5, 300, (2, 12)), "lengths": torch.tensor([12, 12])}
    with autocast():
        assert model.encoder(batch["tokens"], batch["lengths"]).dtype == torch.bfloat16
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first, _ = train_step(model, opt, batch, autocast, scaler, clip=1.0)
    for _ in range(5):
        loss, ok = train_step(model, opt, batch, autocast, scaler, clip=1.0)
    assert ok and loss.item() < first.item()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(UsageError, match="fp16 needs a CUDA device"):
        autocast_for(cpu, "fp16")


def test_train_init_seed_fixes_the_start_and_train_seed_the_rest():
    from lstmtext.config import build_recipe
    from lstmtext.tasks import sentiment
    from lstmtext.training.build import build_model_seeded

    def start(seed, init_seed):
        recipe = build_recipe(
            "sentiment", sentiment.Options, overrides=[f"train.seed={seed}", f"train.init_seed={init_seed}"]
        )
        torch.manual_seed(seed)  # what the run has drawn before it builds the model
        model = build_model_seeded(sentiment, recipe, 50, ["neg", "pos"])
        return model.state_dict(), torch.rand(3)

    (a, after_a), (b, after_b), (c, _) = start(7, 3), start(8, 3), start(7, 4)
    assert _same(a, b) and not _same(a, c)
    assert not torch.equal(after_a, after_b)  # dropout and data order still follow train.seed
    (d, _), (e, _) = start(7, 0), start(8, 0)  # 0: the start follows train.seed, as before init_seed existed
    assert not _same(d, e)


def test_train_average_of_runs_from_one_start(tmp_path):
    runs = [tmp_path / f"r{seed}.ckpt" for seed in (1, 2)]
    for seed, out in zip((1, 2), runs):
        proc = run_cli(
            "train", "sentiment", "-o", out, "--epochs", "1", "--seed", seed, "-q", *TINY, "--set", "train.init_seed=5"
        )
        assert proc.returncode == 0, proc.stderr
    soup = tmp_path / "soup.ckpt"
    proc = run_cli("average", *runs, "-o", soup)
    assert proc.returncode == 0, proc.stderr
    a, b, m = _weights(runs[0]), _weights(runs[1]), _weights(soup)
    assert m.keys() == a.keys() and not _same(a, b)
    for k in m:
        assert m[k].dtype == a[k].dtype and torch.allclose(m[k], (a[k].double() + b[k].double()).div(2).to(a[k].dtype))
    info = json.loads(run_cli("info", soup, "--format", "json").stdout)
    assert info["metrics"] == {} and [p["seed"] for p in info["provenance"]["averaged"]] == [1, 2]
    proc = run_cli("predict", soup, input="a gorgeous, witty film\n\n")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2, proc.stderr

    assert_usage_error(run_cli("average", runs[0], "-o", tmp_path / "one.ckpt"), "at least two")
    assert_usage_error(run_cli("average", *runs, "-o", soup), "exists", "--force")
    assert_usage_error(
        run_cli("average", runs[0], tmp_path / "r1.resume.safetensors", "-o", tmp_path / "x.ckpt"), "resume state"
    )
    other = tmp_path / "other.ckpt"
    proc = run_cli("train", "sentiment", "-o", other, "--epochs", "1", "-q", *TINY, "--set", "encoder.hidden_dim=16")
    assert proc.returncode == 0, proc.stderr
    assert_usage_error(run_cli("average", runs[0], other, "-o", tmp_path / "x.ckpt"), "other.ckpt", "shapes differ")
    assert not (tmp_path / "x.ckpt").exists()


def test_train_on_eval_sees_each_dev_evaluation_and_its_exception_ends_the_run_cleanly(tmp_path):
    """``on_eval(step, metrics, fraction)`` after each evaluation (lstmtext tune prunes through it): an exception
    it raises ends train() with the lock released, no temp file left, and the best checkpoint so far kept."""
    from lstmtext.training import train

    class Stop(Exception):
        pass

    seen = []

    def on_eval(step, metrics, fraction):
        seen.append((step, metrics, fraction))
        if step == 20:
            raise Stop

    out = tmp_path / "run.ckpt"
    overrides = [*TINY[1::2], "train.eval_every=10", "train.epochs=2"]
    with pytest.raises(Stop):
        train("sentiment", overrides=overrides, out=out, show_progress=False, on_eval=on_eval)
    rows = [json.loads(l) for l in (tmp_path / "run.metrics.jsonl").read_text().splitlines()]
    assert [(s, f) for s, _, f in seen] == [(10, 10 / 36), (20, 20 / 36)]  # 18 steps an epoch, 2 epochs
    assert [m for _, m, _ in seen] == [{k[4:]: v for k, v in r.items() if k.startswith("dev_")} for r in rows]
    run_files = sorted(p.name for p in tmp_path.iterdir() if p.name != "home")  # home: LSTMTEXT_HOME (conftest)
    assert run_files == ["run.ckpt", "run.metrics.jsonl", "run.resume.safetensors"]
