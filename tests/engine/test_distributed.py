"""Two-process gloo DDP on CPU: identical parameters, distinct shards, every clip evaluated once."""

from __future__ import annotations

import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gaze_attention.engine.distributed import ShardedInfiniteSampler, init_distributed, shard


def test_sampler_shards_are_disjoint_and_resumable():
    size, world, per_rank = 10, 3, 4  # 10 items padded to 12: ranks take 4 each
    epoch = [
        ShardedInfiniteSampler(size, rank=r, world_size=world, seed=5).epoch_indices(0) for r in range(world)
    ]
    assert all(len(e) == per_rank for e in epoch)
    flat = sum(epoch, [])
    assert set(flat) == set(range(size)) and len(flat) == 12  # two padded repeats only
    it = iter(ShardedInfiniteSampler(size, rank=1, world_size=world, seed=5))
    draws = [next(it) for _ in range(11)]
    later = iter(ShardedInfiniteSampler(size, rank=1, world_size=world, seed=5, start=6))
    assert [next(later) for _ in range(5)] == draws[6:]
    assert len({s for _, s in draws}) == 11  # every draw has its own augmentation seed
    assert shard(list(range(7)), type("I", (), {"rank": 1, "world_size": 3})()) == [1, 4]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg_dict: dict, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
    )  # fmt: skip
    from gaze_attention.data import PreparedData
    from gaze_attention.engine import evaluate, train
    from gaze_attention.engine.config import TrainConfig

    # The group is set up here, so train() reuses it and evaluation can follow.
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict(cfg_dict)
    result = train(cfg, progress=False)
    torch.save(
        {k: v.detach().clone() for k, v in result.model.state_dict().items()}, f"{out}/params{rank}.pt"
    )
    info = init_distributed()
    m = evaluate(
        result.model, PreparedData(cfg.data.root), 1, gaze_mode="argmax", batch_size=3, dist_info=info
    )
    with open(f"{out}/rank{rank}.json", "w") as fh:
        json.dump({"seen": result.seen, "clips": [c["name"] for c in m["clips"]], "num_clips": m["num_clips"],
                   "validation": result.validation}, fh)  # fmt: skip
    dist.barrier()
    dist.destroy_process_group()
    # Everything this test checks is on disk now. Gloo's worker threads can still abort the
    # interpreter's finalization (a PyTorch race, pytorch/pytorch#179291), which would fail the
    # test for a reason outside this project: leave without finalization.
    os._exit(0)


def test_two_process_gloo_ddp(prepared, tmp_path, tiny_config):
    from gaze_attention.data import PreparedData

    cfg = tiny_config(prepared, tmp_path / "run", **{"optim.iters": 3, "run.val_every": 3,
                                                     "run.tensorboard": True})  # fmt: skip
    mp.spawn(_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2, join=True)
    p0, p1 = torch.load(tmp_path / "params0.pt"), torch.load(tmp_path / "params1.pt")
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    # Global batch 4 = 2 per rank; 12 training clips, so 3 steps stay inside one epoch.
    assert len(r0["seen"]) == len(r1["seen"]) == 6
    assert not set(r0["seen"]) & set(r1["seen"])
    # Every test clip exactly once, and both ranks agree on the result.
    test_names = [r.name for r in PreparedData(prepared).split(1, "test")]
    assert sorted(r0["clips"]) == sorted(test_names) and r0["clips"] == r1["clips"]
    assert r0["num_clips"] == len(test_names)
    assert r0["validation"] and r0["validation"] == r1["validation"]
    # Only rank 0 wrote: one run folder with one set of files.
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best-00000003", "ckpt-00000003"]
    assert len(list((run / "tb").iterdir())) == 1
    assert (run / "metrics.csv").read_text().count("\n") == 4  # header + 3 rows


def test_two_process_gloo_ddp_with_a_vit_backbone(prepared, tmp_path, tiny_config):
    """The same job with a ViT backbone: layer-decayed AdamW groups, drop path, ranks in step."""
    vit = {"model.preset": "vit-tiny", "model.use_flow": False, "model.width": None, "model.dropout": 0.0,
           "model.backbone_config": {"depth": 2, "gaze_block": 1, "drop_path": 0.1},
           "optim.optimizer": "adamw", "optim.lr": 1e-3, "optim.layer_decay": 0.75, "optim.schedule": "cosine"}
    cfg = tiny_config(prepared, tmp_path / "run", **{"optim.iters": 3, "run.val_every": 3, **vit})
    mp.spawn(_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2, join=True)
    p0, p1 = torch.load(tmp_path / "params0.pt"), torch.load(tmp_path / "params1.pt")
    assert any("blocks" in k for k in p0)
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert not set(r0["seen"]) & set(r1["seen"])
    assert r0["validation"] and r0["validation"] == r1["validation"]
