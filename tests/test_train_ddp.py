"""Distributed training: 2 CPU processes (gloo) through ``torch.distributed.run``."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from test_train import read_metrics, toy_config, write_cfg, write_toy

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_process_contrastive_run(tmp_path):
    train_h5 = write_toy(tmp_path / "train.h5", 24, 0)
    val_h5 = write_toy(tmp_path / "val.h5", 10, 1)
    cfg = toy_config({"train": train_h5, "val": val_h5, "target": None}, "contrastive",
                     **{"optim.epochs": 2, "optim.batch_size": 4, "loss.alpha": 0.5})
    path = write_cfg(tmp_path / "c.yaml", cfg)
    out = tmp_path / "run"
    proc = _torchrun(["-m", "sparsenu", "train", str(path), "--out", str(out), "-q"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_metrics(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # rank 0 alone writes the CSV
    state = torch.load(out / "last.pt", weights_only=True)
    # 24 events, 2 ranks x 4 per step -> 3 steps per epoch
    assert state["global_step"] == 6 and state["epoch"] == 2 and state["finalized"]
    assert "classifier" in state["heads"]
    assert all(torch.isfinite(v).all() for v in state["encoder"].values() if v.is_floating_point())
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]


GRAD_SCRIPT = textwrap.dedent(
    r"""
    import json, os, sys
    import torch
    import torch.distributed as dist
    from sparsenu.losses import contrastive_loss
    from sparsenu.train.distributed import gather_nograd, gather_with_grad

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    dtype = torch.float64
    enc = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5)).to(dtype)
    B = 8
    x1, x2 = torch.randn(B, 6, dtype=dtype), torch.randn(B, 6, dtype=dtype)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    out = {}
    for alpha in (0.0, 1.0):
        # single-process reference on the full batch
        enc.zero_grad()
        contrastive_loss(enc(x1), enc(x2), labels=labels if alpha else None, alpha=alpha,
                         temperature=0.2).backward()
        ref = [p.grad.clone() for p in enc.parameters()]
        # each rank a contiguous half; gradients averaged over ranks as DDP does (done by
        # hand: this checks the gather's maths, the trainer test covers DDP itself)
        sl = slice(rank * B // world, (rank + 1) * B // world)
        enc.zero_grad()
        h = enc(torch.cat([x1[sl], x2[sl]]))
        b = h.shape[0] // 2
        z1, z2 = gather_with_grad(h[:b]), gather_with_grad(h[b:])
        lab = gather_nograd(labels[sl]) if alpha else None
        loss = contrastive_loss(z1, z2, labels=lab, alpha=alpha, temperature=0.2)
        loss.backward()
        for p in enc.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world
        err = max(float((p.grad - r).abs().max()) for p, r in zip(enc.parameters(), ref))
        scale = max(float(r.abs().max()) for r in ref)
        out[str(alpha)] = [err, scale, z1.shape[0]]
    if rank == 0:
        with open(sys.argv[1], "w") as fh:
            json.dump(out, fh)
    dist.barrier()
    dist.destroy_process_group()
    """
)


def test_gathered_loss_gradient_equals_full_batch_gradient(tmp_path):
    script = tmp_path / "grad.py"
    script.write_text(GRAD_SCRIPT)
    result = tmp_path / "out.json"
    proc = _torchrun([str(script), str(result)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(result.read_text())
    for alpha, (err, scale, n) in out.items():
        assert n == 8  # all 8 events from both ranks enter the loss
        assert scale > 1e-6
        assert err < 1e-12 * max(1.0, scale), (alpha, err, scale)


def test_collective_tensors_live_on_the_requested_device(monkeypatch):
    """The epoch-sum all-reduce builds its tensor on the device it is given (a CUDA run gives
    cuda:LOCAL_RANK; NCCL rejects CPU tensors): checked with a recording all_reduce on a
    device that is not the default one."""
    import pytest

    import sparsenu.train.distributed as D

    class Seen(Exception):
        pass

    def recording_all_reduce(t, op=None):
        raise Seen(t.device)

    monkeypatch.setattr(D, "_active", lambda: True)
    monkeypatch.setattr(D.dist, "all_reduce", recording_all_reduce)
    meta = torch.device("meta")
    with pytest.raises(Seen) as seen:
        D.all_reduce_sum([1.0, 2.0], device=meta)
    assert seen.value.args == (meta,)
    with pytest.raises(TypeError):  # the device cannot be forgotten
        D.all_reduce_sum([1.0])  # type: ignore[call-arg]


def test_trainer_reduces_its_sums_on_its_own_device(tmp_path, monkeypatch):
    """Every all-reduce the trainer issues is given the trainer's device."""
    import sparsenu.train.trainer as T
    from sparsenu.train import train

    calls = []
    real = T.all_reduce_sum

    def spy(values, *, device):
        calls.append(device)
        return real(values, device=device)

    monkeypatch.setattr(T, "all_reduce_sum", spy)
    train_h5 = write_toy(tmp_path / "train.h5", 12, 0)
    val_h5 = write_toy(tmp_path / "val.h5", 6, 1)
    cfg = toy_config({"train": train_h5, "val": val_h5, "target": None}, "classifier",
                     **{"optim.epochs": 2, "optim.batch_size": 4, "device": "cpu"})
    train(write_cfg(tmp_path / "c.yaml", cfg), out_dir=tmp_path / "run", progress=False)
    assert calls == [torch.device("cpu")] * 2
