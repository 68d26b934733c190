"""Fuzz: whatever the split lists or labels.csv say, `prepare` touches nothing outside OUT."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gaze_attention.data.egtea import AnnotationError
from gaze_attention.data.prepare import PrepareError, prepare

# Names built to escape: separators, parent references, absolute paths into the sandbox
# ({BASE} is replaced by its path), NUL and other control characters, plus arbitrary text.
_PIECES = st.sampled_from(
    ["..", ".", "/", "\\", "x", "x.npy", "decoy", "out", "images_rgb", "gaze", ".tmp", "\x00", "\n",
     "\t", " ", "{BASE}", "~", "*", "C:", "P01-R01-Pasta-1-2-F000001-F000002", "é", "\u202e"]
)  # fmt: skip
# Names that reach a video the sandbox provides (so the clip would be written, and its old
# output deleted first): the destructive cases of the original bug.
ESCAPES = [
    "../../x",
    "../x",
    "..",
    "{BASE}/x",
    "x/../../../x",
    "../../decoy",
    "../../work/x",
    ".",
    "../../out",
]
NAMES = st.one_of(
    st.sampled_from(ESCAPES),
    st.lists(_PIECES, min_size=1, max_size=6).map("".join),
    st.text(min_size=0, max_size=12),
)
IDS = st.one_of(st.integers(-2, 5).map(str), st.sampled_from(["x", "", "1.5", "99"]))
LINES = st.one_of(
    st.tuples(NAMES, IDS, IDS, IDS).map(" ".join),
    st.text(max_size=30),
)


def _a_video(tiny_raw: Path) -> Path:
    return sorted((tiny_raw / "cropped_clips").rglob("*.mp4"))[0]


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every path under root except `skip`: file hashes, 'dir' and 'link' markers."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d == skip or skip in d.parents:
            continue
        for n in dirnames + filenames:
            p = d / n
            if p == skip:
                continue
            if p.is_symlink():
                seen[str(p)] = "link:" + os.readlink(p)
            elif p.is_dir():
                seen[str(p)] = "dir"
            else:
                seen[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest()
    return seen


def _sandbox(base: Path, video: Path) -> Path:
    """Decoys around OUT = base/work/out where `..`-style names would land, and a real video
    wherever such a name would look for one (raw = base/raw, videos in raw/cropped_clips or
    raw/videos), so that the clip gets as far as writing its outputs."""
    work = base / "work"
    for d in (base / "decoy", work / "decoy", work / "x", work / "images_rgb", base / "x"):
        d.mkdir(parents=True, exist_ok=True)
        (d / "keep.txt").write_text(f"keep {d.name}")
    for f in (work / "x.npy", base / "x.npy", work / "decoy.npy", base / "decoy.npy"):
        f.write_bytes(b"keep")
    for d in (base, base / "raw", base / "work", base / "raw" / "cropped_clips", base / "raw" / "videos"):
        d.mkdir(parents=True, exist_ok=True)
        for stem in ("x", "decoy", "out", ".."):
            shutil.copyfile(video, d / f"{stem}.mp4")
    return work / "out"


def _run(raw: Path, out: Path, annotations: Path | None = None) -> None:
    try:
        prepare(
            raw, out, flow="none", size=(32, 24), annotations=annotations, workers=1,
            allow_missing_gaze=True, progress=False,
        )  # fmt: skip
    except (AnnotationError, PrepareError):
        pass  # refusing is fine; touching anything outside OUT is not


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINES, min_size=1, max_size=6), test_lines=st.lists(LINES, max_size=3))
@example(lines=["../../x 1 1 1"], test_lines=["../x 1 1 1"])  # the reported fault
def test_split_lists_never_touch_outside_out(tiny_raw, lines, test_lines):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        out = _sandbox(base, _a_video(tiny_raw))
        ann = base / "ann"
        ann.mkdir()
        shutil.copyfile(tiny_raw / "action_annotation" / "action_idx.txt", ann / "action_idx.txt")
        for name, ls in (("train_split1.txt", lines), ("test_split1.txt", test_lines)):
            text = "\n".join(ln.replace("{BASE}", str(base)) for ln in ls) + "\n"
            (ann / name).write_text(text, encoding="utf-8", errors="surrogateescape")
        before = _snapshot(base, out)
        _run(base / "raw", out, ann)
        assert _snapshot(base, out) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(NAMES, min_size=1, max_size=5))
@example(names=["../../x", "../x"])
def test_labels_csv_clip_names_never_touch_outside_out(tiny_raw, names):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        out = _sandbox(base, _a_video(tiny_raw))
        raw = base / "raw"
        shutil.rmtree(raw / "cropped_clips")  # the own-recordings layout: videos/ + labels.csv
        rows = ["clip,label"] + [
            '"{}",cut'.format(n.replace("{BASE}", str(base)).replace('"', '""')) for n in names
        ]
        (raw / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8", errors="surrogateescape")
        before = _snapshot(base, out)
        _run(raw, out)
        assert _snapshot(base, out) == before
