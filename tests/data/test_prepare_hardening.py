"""prepare, second round: links in OUT, one run per OUT, a full disk, advice that is right, synth counts."""

from __future__ import annotations

import errno
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from gaze_attention.cli import main as cli_main
from gaze_attention.data.prepare import PrepareError, PrepareOptions, prepare
from gaze_attention.data.synthetic import make_synthetic_raw
from gaze_attention.runlock import claim_run_folder

TINY_SIZE = (64, 48)


def _copy_prepared(tiny_raw: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    assert prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False).ok
    return out


def test_a_manifest_link_planted_in_out_is_never_followed(tiny_raw, tmp_path):
    out = _copy_prepared(tiny_raw, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "manifest.jsonl").unlink()
    (out / "manifest.jsonl").symlink_to(victim)
    (out / "prepare.json").unlink()
    (out / "prepare.json").symlink_to(victim)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for folder in ("images_rgb", "annotations"):  # the folders clips and lists are written into
        shutil.rmtree(out / folder)
        (out / folder).symlink_to(elsewhere, target_is_directory=True)
    r = prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False)
    assert r.ok, r.summary()
    assert victim.read_text() == "precious\n" and not any(elsewhere.iterdir())
    assert (out / "images_rgb").is_dir() and not (out / "images_rgb").is_symlink()
    assert not (out / "manifest.jsonl").is_symlink() and not (out / "prepare.json").is_symlink()
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 9
    assert any("manifest.jsonl was a symbolic link" in w for w in r.warnings)


def test_a_second_prepare_into_the_same_out_is_refused_naming_the_holder(tiny_raw, tmp_path):
    out = tmp_path / "out"
    holder = claim_run_folder(out, resume=True)  # what a running `prepare` holds
    try:
        with pytest.raises(PrepareError, match=rf"pid {os.getpid()} on {socket.gethostname()}"):
            prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False)
        assert not (out / "manifest.jsonl").exists()
        # A shard run refuses too while a whole run holds OUT.
        with pytest.raises(PrepareError, match="being prepared by another run"):
            prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False, shard="0/2")
    finally:
        holder.release()
    assert prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False).ok
    assert not (out / "run.lock").exists()


def test_shards_run_together_but_a_whole_run_waits_for_none_of_them(tiny_raw, tmp_path):
    out = tmp_path / "out"
    other = claim_run_folder(out / ".locks" / "shard-1-of-2", resume=True)  # shard 1/2 running
    try:
        r0 = prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False, shard="0/2")
        assert r0.ok, r0.summary()
        with pytest.raises(PrepareError, match="being prepared by another run"):
            prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False)
        with pytest.raises(PrepareError, match="being prepared by another run"):
            prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False, shard="1/2")
    finally:
        other.release()
    assert prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False).ok  # once no shard runs
    assert not (out / ".locks").exists() and not (out / "run.lock").exists()


def test_a_full_disk_names_the_file_and_still_prints_the_summary(tiny_raw, tmp_path, monkeypatch, capsys):
    import gaze_attention.data.prepare.run as run_mod

    real = run_mod.open_for_append

    class FillsUp:
        """The manifest's file: the third record finds the disk full (write() names no file)."""

        def __init__(self, path):
            self.fh, self.lines = real(path), 0

        def write(self, text):
            self.lines += 1
            if self.lines == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(text)

        def flush(self):
            self.fh.flush()

        def close(self):
            self.fh.close()

    monkeypatch.setattr(run_mod, "open_for_append", FillsUp)
    out = tmp_path / "out"
    code = cli_main(["prepare", str(tiny_raw), str(out), "--flow", "none", "--size", "64x48",
                     "--workers", "0", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "prepared 2 clip(s)" in err
    assert f"STOPPED: cannot write {out / 'manifest.jsonl'}: the disk is full" in err
    # What was recorded is on disk, and a rerun completes the rest.
    monkeypatch.setattr(run_mod, "open_for_append", real)
    r = prepare(tiny_raw, out, flow="none", size=TINY_SIZE, progress=False)
    assert r.ok and len(r.skipped) == 2 and len(r.prepared) == 7


def test_a_clip_file_that_cannot_be_written_is_named(tiny_raw, tmp_path, monkeypatch):
    def full(file, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as from write(): no file name

    monkeypatch.setattr(np, "save", full)
    r = prepare(tiny_raw, tmp_path / "out", flow="none", size=TINY_SIZE, progress=False)
    assert len(r.failed) == 9
    assert all(why.startswith("cannot write ") and "gaze.npy: the disk is full" in why for _, why in r.failed)


def _own(root: Path, with_video: bool, with_gaze: bool) -> Path:
    (root / "videos").mkdir(parents=True)
    (root / "gaze").mkdir()
    (root / "labels.csv").write_text("clip,label\nc1,pour\n")
    if with_video:
        from test_video import _frames, write_video

        write_video(root / "videos" / "c1.mp4", _frames(8))
    if with_gaze:
        (root / "gaze" / "c1.csv").write_text("frame,x,y\n0,0.5,0.5\n")
    return root


def test_a_row_with_neither_video_nor_gaze_gets_advice_that_works(tmp_path):
    raw = _own(tmp_path / "raw", with_video=False, with_gaze=False)
    for allow in (False, True):
        r = prepare(raw, tmp_path / f"out{allow}", flow="none", size=TINY_SIZE, progress=False,
                    allow_missing_gaze=allow)  # fmt: skip
        ((clip, why),) = r.failed
        assert "missing video" in why and "no gaze file" in why, why
        assert "use --allow-missing-gaze" not in why
    # Gaze missing alone: the flag is the fix, and following it works.
    raw2 = _own(tmp_path / "raw2", with_video=True, with_gaze=False)
    (why,) = [w for _, w in prepare(raw2, tmp_path / "o2", flow="none", size=TINY_SIZE, progress=False).failed]
    assert "use --allow-missing-gaze" in why
    assert prepare(raw2, tmp_path / "o3", flow="none", size=TINY_SIZE, progress=False, allow_missing_gaze=True).ok


def test_synth_refuses_one_session(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["synth", str(tmp_path / "s"), "--sessions", "1"])
    assert e.value.code == 2
    assert "--sessions: must be at least 2, got 1" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="sessions must be at least 2"):
        make_synthetic_raw(tmp_path / "s2", sessions=1)


def test_workers_0_prepares_in_the_main_process(tiny_raw, tmp_path):
    assert PrepareOptions(workers=0).workers == 1
    out = tmp_path / "out"
    assert cli_main(["prepare", str(tiny_raw), str(out), "--flow", "none", "--size", "64x48",
                     "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 9
    shutil.rmtree(out)
