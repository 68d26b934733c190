"""`prepare` never touches anything outside its output folder, checks the annotations before any
work, decodes awkward gaze exports, and takes its worker processes with it when killed."""

from __future__ import annotations

import codecs
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gaze_attention.data.begaze import read_begaze, read_gaze_csv
from gaze_attention.data.egtea import AnnotationError, check_clip_name, clip_name_problem, read_split
from gaze_attention.data.prepare import ClipError, ClipJob, PrepareError, _remove, prepare, process_clip

TINY_SIZE = (64, 48)
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _ann(tiny_raw: Path, dst: Path) -> Path:
    """A writable copy of tiny_raw's annotation folder."""
    shutil.copytree(tiny_raw / "action_annotation", dst)
    return dst


def _decoys(base: Path) -> dict[Path, bytes]:
    """Files a traversing clip name `../../x` would hit from OUT = base/out."""
    (base / "x").mkdir(parents=True)
    files = {base / "x" / "keep.txt": b"precious", base / "x.npy": b"also precious"}
    for p, data in files.items():
        p.write_bytes(data)
    return files


# ----------------------------------------------------------------------------- clip names


@pytest.mark.parametrize(
    "name",
    [
        "../../x",
        "..",
        ".",
        "a/b",
        "a\\b",
        "/etc/passwd",
        "x\x00y",
        "",
        ".hidden",
        "C:x",
        "a\nb",
        " x",
        "x" * 201,
    ],
)
def test_unsafe_clip_names_are_refused(name):
    assert clip_name_problem(name) is not None
    with pytest.raises(AnnotationError, match="labels.csv:7"):
        check_clip_name(name, "labels.csv:7")


@pytest.mark.parametrize("name", ["P04-R06-GreekSalad-682170-683940-F016368-F016419", "kitchen_3", "clip.v2"])
def test_plain_clip_names_pass(name):
    assert clip_name_problem(name) is None and check_clip_name(name) == name


def test_traversal_in_a_split_list_touches_nothing_outside_out(tiny_raw, tmp_path):
    # OUT = tmp/work/out: `../../x` lands on tmp/work/x and tmp/work/x.npy. Its video exists
    # (cropped_clips/../../x.mp4 = tmp/x.mp4), so without the checks the clip is written,
    # deleting those paths first.
    decoys = _decoys(tmp_path / "work")
    raw = tmp_path / "raw"
    (raw / "cropped_clips").mkdir(parents=True)
    shutil.copyfile(next((tiny_raw / "cropped_clips").rglob("*.mp4")), tmp_path / "x.mp4")
    ann = _ann(tiny_raw, tmp_path / "ann")
    with open(ann / "train_split1.txt", "a") as fh:
        fh.write("../../x 1 1 1\n")
    out = tmp_path / "work" / "out"
    with pytest.raises(
        AnnotationError, match=r"train_split1.txt:7: clip name '../../x' contains a path separator"
    ):
        prepare(
            raw, out, flow="none", size=TINY_SIZE, annotations=ann, allow_missing_gaze=True, progress=False
        )
    assert all(p.read_bytes() == data for p, data in decoys.items())
    assert not out.exists()  # refused before any work


def test_traversal_in_labels_csv_touches_nothing_outside_out(tiny_raw, tmp_path):
    decoys = _decoys(tmp_path / "work")
    raw = tmp_path / "own"
    (raw / "videos").mkdir(parents=True)
    clip = next((tiny_raw / "cropped_clips").rglob("*.mp4"))
    shutil.copyfile(clip, raw / "videos" / "ok.mp4")
    shutil.copyfile(clip, tmp_path / "x.mp4")  # = videos/../../x.mp4
    (raw / "labels.csv").write_text("clip,label\nok,cut\n../../x,cut\n..,cut\n")
    out = tmp_path / "work" / "out"
    with pytest.raises(AnnotationError) as exc:
        prepare(raw, out, flow="none", size=TINY_SIZE, allow_missing_gaze=True, progress=False)
    assert "labels.csv:3: clip name '../../x'" in str(exc.value) and "labels.csv:4: clip name '..'" in str(
        exc.value
    )
    assert all(p.read_bytes() == data for p, data in decoys.items())
    assert not out.exists()


def test_process_clip_and_remove_refuse_paths_outside_out(tiny_raw, tmp_path):
    """The second line of defence, for a name that reached the clip stage unchecked."""
    decoys = _decoys(tmp_path / "work")
    out = tmp_path / "work" / "out"
    out.mkdir()
    video = next((tiny_raw / "cropped_clips").rglob("*.mp4"))
    job = ClipJob(name="../../x", video=str(video), label=0, verb=0, noun=0, splits=["train1"])
    with pytest.raises(ClipError, match="path separator"):
        process_clip(job, out, flow="none", size=TINY_SIZE)
    for p in (tmp_path / "work" / "x", tmp_path / "work" / "x.npy", out, out / "images_rgb" / ".." / ".."):
        with pytest.raises(PrepareError, match="not inside the output folder"):
            _remove(p, out)
    assert all(p.read_bytes() == data for p, data in decoys.items())


def test_symlink_inside_out_is_unlinked_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    out = tmp_path / "out"
    (out / "images_rgb").mkdir(parents=True)
    link = out / "images_rgb" / "clip"
    link.symlink_to(target, target_is_directory=True)
    _remove(link, out)
    assert not link.exists() and (target / "keep.txt").read_text() == "keep"


# ----------------------------------------------------------------------------- annotations


def test_every_annotation_problem_is_reported_with_file_and_line_before_any_work(tiny_raw, tmp_path):
    ann = _ann(tiny_raw, tmp_path / "ann")
    train = (ann / "train_split1.txt").read_text().splitlines()
    first = train[0].split()[0]
    train += [
        "P01-R01-PastaSalad-1-2-F000001-F000002 99 1 1",  # line 7: action beyond action_idx.txt (3)
        f"{first} 2 2 1",  # line 8: listed twice, with another label
        "too few fields",  # line 9
    ]
    (ann / "train_split1.txt").write_text("\n".join(train) + "\n")
    (ann / "test_split1.txt").write_text(f"{first} 1 1 1\n")  # also in train: a leak
    out = tmp_path / "out"
    with pytest.raises(AnnotationError) as exc:
        prepare(tiny_raw, out, flow="none", size=TINY_SIZE, annotations=ann, progress=False)
    msg = str(exc.value)
    t, s = ann / "train_split1.txt", ann / "test_split1.txt"
    assert f"{t}:9: expected '<clip> <action> <verb> <noun>'" in msg
    assert f"{t}:7: action id 99 is beyond the 3 actions of {ann / 'action_idx.txt'}" in msg
    assert (
        f"{t}:8: clip {first} is listed twice in split 1: also at {t}:1 (with action 1 there, 2 here)" in msg
    )
    assert f"{s}:1: clip {first} is listed twice in split 1: also at {t}:1" in msg
    assert msg.startswith("4 problem(s)")
    assert not out.exists()


def test_missing_split_list_is_refused_by_prepare(tiny_raw, tmp_path):
    ann = _ann(tiny_raw, tmp_path / "ann")
    (ann / "train_split1.txt").unlink()
    with pytest.raises(AnnotationError, match=r"split 1 has test_split1.txt but no train_split1.txt"):
        prepare(tiny_raw, tmp_path / "out", flow="none", size=TINY_SIZE, annotations=ann, progress=False)


def test_labels_csv_duplicates_and_unknown_labels_are_all_reported(tiny_raw, tmp_path):
    raw = tmp_path / "own"
    (raw / "videos").mkdir(parents=True)
    (raw / "classes.txt").write_text("cut\nopen\n")
    (raw / "labels.csv").write_text("clip,label\na,cut\nb,open\na,open\nc,stir\n")
    with pytest.raises(AnnotationError) as exc:
        prepare(raw, tmp_path / "out", flow="none", progress=False)
    msg = str(exc.value)
    assert f"{raw / 'labels.csv'}:4: clip a is listed twice: also at {raw / 'labels.csv'}:2" in msg
    assert f"{raw / 'labels.csv'}:5: label 'stir' not in {raw / 'classes.txt'}" in msg


def test_non_utf8_split_list_names_the_file(tmp_path):
    p = tmp_path / "train_split1.txt"
    p.write_bytes(b"clip\xff 1 1 1\n")
    with pytest.raises(AnnotationError, match=r"train_split1.txt: not UTF-8 text"):
        read_split(p)


# ----------------------------------------------------------------------------- gaze files


def _begaze_text() -> str:
    return (
        "## [BeGaze]\n## Number of Samples:\t3\n"
        "Time\tType\tTrial\tL POR X [px]\tL POR Y [px]\tFrame\tL Event Info\n"
        "0\tSMP\t1\t640\t480\t0\tFixation\n"
        "42\tSMP\t1\t320\t240\t1\tFixation\n"
        "84\tSMP\t1\t960\t720\t2\tSaccade\n"
    )


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),
        lambda t: t.encode("utf-16"),  # BOM in the platform's order
        lambda t: t.encode("utf-16-be"),  # no BOM at all
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
    ],
    ids=["utf16le-bom", "utf16-bom", "utf16be-nobom", "utf8-bom"],
)
def test_begaze_export_in_utf16_or_with_bom_reads(tmp_path, encode):
    p = tmp_path / "P01-R01-Test.txt"
    p.write_bytes(encode(_begaze_text()))
    g = read_begaze(p)
    assert g.num_frames == 3 and g.malformed == 0
    np.testing.assert_allclose(g.points, [[0.5, 0.5], [0.25, 0.25], [0.75, 0.75]])


def test_non_finite_gaze_rows_are_reported_not_silently_used(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text(_begaze_text().replace("320\t240", "nan\t240").replace("960\t720", "inf\t720"))
    g = read_begaze(p)
    assert g.malformed == 2 and "not finite" in g.report() and f"{p}:5" in g.report()
    c = tmp_path / "g.csv"
    c.write_text("frame,x,y\n0,0.5,0.5\n1,nan,0.5\n")
    assert "not finite" in read_gaze_csv(c).report()


def test_clip_with_no_usable_gaze_is_warned(tiny_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(tiny_raw, raw)
    for p in (raw / "gaze_data").iterdir():
        lines = p.read_text(encoding="latin-1").splitlines()
        # Keep one parsable row far beyond every clip: the file reads, but covers no clip.
        head = [ln for ln in lines if ln.startswith("##") or ln.split()[:1] == ["Time"]]
        tokens = next(ln for ln in lines if ln not in head and ln.strip()).split()
        if len(tokens) == 7:
            tokens[5] = "99999"  # the session frame
        else:
            tokens[-2] = "01:00:00:00"  # the 26-column layout's timecode
        p.write_text("\n".join([*head, "\t".join(tokens)]) + "\n", encoding="latin-1")
    r = prepare(raw, tmp_path / "out", flow="none", size=TINY_SIZE, progress=False)
    assert sum("no usable sample" in w for w in r.warnings) == 9, r.summary()


# ----------------------------------------------------------------------------- worker processes


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")
def test_sigkill_of_prepare_takes_its_workers_with_it(tiny_raw, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # Full-size TV-L1 keeps every worker busy on its clip for far longer than the test waits.
    cmd = [sys.executable, "-m", "gaze_attention.cli", "prepare", str(tiny_raw), str(out),
           "--workers", "2", "--flow", "tvl1", "--size", "340x256", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / ".tmp").is_dir() and any((out / ".tmp").iterdir()):  # a worker is on a clip
                kids = _children(proc.pid)
                if len(kids) >= 2:
                    break
            time.sleep(0.2)
        assert proc.poll() is None and len(kids) >= 2, "prepare did not get its workers going"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.2)
        survivors = [k for k in kids if _alive(k)]
        assert not survivors, f"worker processes {survivors} outlived the killed prepare"
    finally:
        if proc.poll() is None:
            proc.kill()
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)


def test_a_failed_frame_write_says_why(tiny_raw, tmp_path, monkeypatch):
    import builtins
    import errno

    real_open = builtins.open

    def full_disk(file, mode="r", *args, **kwargs):
        if str(file).endswith(".jpg") and "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk)
    r = prepare(tiny_raw, tmp_path / "out", flow="none", size=TINY_SIZE, progress=False)
    assert len(r.failed) == 9 and all("0001.jpg: the disk is full" in why for _, why in r.failed), r.failed


def test_the_real_egtea_split_lists_pass_the_checks(shared_dir):
    """The stricter checks must not refuse the released EGTEA Gaze+ lists (8299 + 2022 clips)."""
    from gaze_attention.data.egtea import check_split_lists, find_split_files, read_split_checked

    ann = shared_dir / "egtea"
    files = find_split_files(ann)
    lists, problems = {}, []
    for n, parts in files.items():
        for part, path in parts.items():
            lists.setdefault(n, {})[part], bad = read_split_checked(path)
            problems += bad
    assert problems + check_split_lists(ann, files, lists) == []
    assert sum(len(v) for v in lists[1].values()) == 8299 + 2022
