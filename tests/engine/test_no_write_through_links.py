"""The general rule: no command writes through a link it did not make.

Symbolic links to files outside are planted at every path a command writes (run folder files,
the temp names they used to use, checkpoints, --json, --timeline, the confusion PNG, the GIF
and PNG of visualize); the command runs; every file outside must be byte-identical and no file
may have appeared there. Every writer of the run folder goes through `gaze_attention.fsio`.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from gaze_attention.cli import main as cli_main
from gaze_attention.engine import train
from gaze_attention.engine.runlock import LOCK_FILE, RunFolderError


class Outside:
    """Victim files outside the output folders, and a check that none of them changed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.count = 0

    def plant(self, link: Path, content: bytes | None = None) -> Path:
        """A link at `link` to a new outside file (or folder, when `link` names a checkpoint)."""
        self.count += 1
        victim = self.root / f"victim{self.count}"
        if link.parent.name == "checkpoints":
            victim.mkdir()
            (victim / "state.json").write_text('{"keep": true}')
        else:
            victim.write_bytes(content if content is not None else f"precious {self.count}\n".encode())
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        link.symlink_to(victim)
        return victim

    def snapshot(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                for p in sorted(self.root.rglob("*"))}


@pytest.fixture
def outside(tmp_path) -> Outside:
    return Outside(tmp_path / "outside")


@pytest.fixture(scope="module")
def base_run(prepared, tmp_path_factory, tiny_config) -> Path:
    """A 2-iteration tiny run with a checkpoint at each iteration (copied by each test)."""
    run = tmp_path_factory.mktemp("links") / "run"
    train(tiny_config(prepared, run, **{"optim.iters": 2, "run.checkpoint_every": 1}), progress=False)
    return run


@pytest.mark.parametrize("overwrite", [False, True])
def test_train_refuses_a_planted_lock_link(prepared, tmp_path, outside, tiny_config, overwrite):
    run = tmp_path / "run"
    outside.plant(run / LOCK_FILE)
    before = outside.snapshot()
    with pytest.raises(RunFolderError, match="the lock file is a symbolic link"):
        train(tiny_config(prepared, run, **{"optim.iters": 1}), progress=False, overwrite=overwrite)
    assert outside.snapshot() == before


FRESH = ["config.yaml", "config.yaml.tmp", "metrics.csv", "validation.csv", "train.log",
         "checkpoints", "checkpoints/ckpt-00000001", "metrics.csv.tmp"]


@pytest.mark.parametrize("name", FRESH)
def test_train_overwrite_never_writes_through_a_planted_link(prepared, base_run, tmp_path, outside, tiny_config,
                                                             name):
    run = tmp_path / "run"
    shutil.copytree(base_run, run, symlinks=True)
    outside.plant(run / name)
    before = outside.snapshot()
    train(tiny_config(prepared, run, **{"optim.iters": 1}), progress=False, overwrite=True)
    assert outside.snapshot() == before
    assert (run / "checkpoints" / "ckpt-00000001" / "state.json").is_file()


RESUMED = [
    "config.yaml", "config.yaml.tmp", "metrics.csv", "checkpoints/ckpt-00000003",
    "train.log", "metrics.csv.tmp",
]


@pytest.mark.parametrize("name", RESUMED)
def test_resume_never_writes_through_a_planted_link(prepared, base_run, tmp_path, outside, tiny_config, name):
    run = tmp_path / "run"
    shutil.copytree(base_run, run, symlinks=True)
    # The victim holds what the run's own file holds: a link that a reader cannot tell apart.
    real = run / name
    outside.plant(real, real.read_bytes() if real.is_file() else None)
    before = outside.snapshot()
    cfg = tiny_config(prepared, run, **{"optim.iters": 3, "run.checkpoint_every": 1, "run.resume": str(run)})
    train(cfg, progress=False)
    assert outside.snapshot() == before
    assert (run / "checkpoints" / "ckpt-00000003" / "state.json").is_file()


def test_evaluate_and_predict_never_write_through_planted_links(prepared, raw, base_run, tmp_path, outside,
                                                               capsys):
    ckpt = base_run / "checkpoints" / "ckpt-00000002"
    out = tmp_path / "out"
    metrics, confusion = out / "m.json", out / "m_confusion.png"
    pred, csv_t, json_t = out / "p.json", out / "t.csv", out / "t.json"
    for p in (metrics, confusion, pred, csv_t, json_t):
        outside.plant(p)
    before = outside.snapshot()
    assert cli_main(["evaluate", "--data", str(prepared), "--checkpoint", str(ckpt), "--max-clips", "2",
                     "--workers", "0", "--precision", "fp32", "--no-progress", "--json", str(metrics)]) == 0
    video = min((raw / "cropped_clips").rglob("*.mp4"), key=lambda p: p.stat().st_size)
    assert cli_main(["predict", str(video), "--checkpoint", str(ckpt), "--precision", "fp32", "--no-progress",
                     "--json", str(pred), "--timeline", str(csv_t), "--timeline", str(json_t)]) == 0
    assert outside.snapshot() == before
    for p in (metrics, confusion, pred, csv_t, json_t):
        assert p.is_file() and not p.is_symlink() and p.stat().st_size > 0
    capsys.readouterr()


@pytest.mark.parametrize("suffix", [".gif", ".png", ".mp4"])
def test_visualize_never_writes_through_a_planted_link(raw, base_run, tmp_path, outside, suffix):
    ckpt = base_run / "checkpoints" / "ckpt-00000002"
    target = tmp_path / "out" / f"vis{suffix}"
    outside.plant(target)
    before = outside.snapshot()
    video = min((raw / "cropped_clips").rglob("*.mp4"), key=lambda p: p.stat().st_size)
    assert cli_main(["visualize", str(video), "--checkpoint", str(ckpt), "--out", str(target), "--max-frames", "8",
                     "--overlays", "gaze,attention", "--device", "cpu", "--size", "96x72"]) == 0
    assert outside.snapshot() == before
    assert target.is_file() and not target.is_symlink() and target.stat().st_size > 0
