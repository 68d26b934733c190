"""Labelled segments of long videos: `video,start,end,label[,split,verb,noun]`.

`start`/`end` are seconds ([start, end)), or frame numbers with `frames=True` (first and
last frame, both included, as EGTEA's F-numbers). The header line is optional (without it
the columns are in that order). Each segment gets a unique clip name
`<video>__<start_ms>_<end_ms>` (frames: `<video>__F<start>_F<end>`), with `-2`, `-3`, ...
added when two segments round to the same name.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaze_attention.data.egtea import AnnotationError, clip_name_problem

COLUMNS = ("video", "start", "end", "label", "split", "verb", "noun")
_MAX_LISTED = 20


class SegmentError(AnnotationError):
    """A labels file of segments that cannot be used; the message names the file and line(s)."""


@dataclass(frozen=True)
class Segment:
    video: str  # the video's file stem
    start: float  # seconds, or first frame with frames=True
    end: float  # seconds (exclusive), or last frame (inclusive)
    label: str
    split: str
    verb: str
    noun: str
    line: int
    name: str
    frames: bool = False


def _name(video: str, start: float, end: float, frames: bool) -> str:
    if frames:
        return f"{video}__F{int(start):06d}_F{int(end):06d}"
    return f"{video}__{round(start * 1000):07d}_{round(end * 1000):07d}"


def _problems(path: Path, problems: list[str]) -> SegmentError:
    shown = problems[:_MAX_LISTED]
    more = len(problems) - len(shown)
    text = "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
    return SegmentError(f"{path}: {len(problems)} problem(s): {text}" if len(problems) > 1 else shown[0])


def read_segments(path: str | Path, *, frames: bool = False) -> list[Segment]:
    """Parse and validate a segments file; SegmentError listing every bad line (file:line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise SegmentError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    cols: list[str] | None = None
    problems: list[str] = []
    out: list[Segment] = []
    names: dict[str, int] = {}
    for cells in reader:
        line = reader.line_num
        cells = [c.strip() for c in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if cols is None:
            low = [c.lower() for c in cells]
            if {"video", "start", "end", "label"} <= set(low):
                cols = low
                continue
            cols = list(COLUMNS)
        where = f"{path}:{line}"
        row = dict(zip(cols, cells, strict=False))
        if len(cells) < 4 or not all(row.get(k) for k in ("video", "start", "end", "label")):
            problems.append(f"{where}: needs video,start,end,label")
            continue
        try:
            start, end = float(row["start"]), float(row["end"])
        except ValueError:
            problems.append(f"{where}: start {row['start']!r} or end {row['end']!r} is not a number")
            continue
        if not (math.isfinite(start) and math.isfinite(end)):
            problems.append(f"{where}: start and end must be finite")
            continue
        if start < 0:
            problems.append(f"{where}: start {start:g} is negative")
            continue
        if frames and (start != int(start) or end != int(end)):
            problems.append(f"{where}: frame numbers must be whole: {row['start']}, {row['end']}")
            continue
        if (end < start) if frames else (end <= start):
            problems.append(f"{where}: end {end:g} is not after start {start:g}")
            continue
        split = row.get("split") or "train"
        if split not in ("train", "test"):
            problems.append(f"{where}: split must be train or test: {split!r}")
            continue
        base = _name(row["video"], start, end, frames)
        why = clip_name_problem(base)
        if why is not None:
            problems.append(f"{where}: {why}")
            continue
        k = names.get(base, 0) + 1
        names[base] = k
        name = base if k == 1 else f"{base}-{k}"
        out.append(
            Segment(row["video"], start, end, row["label"], split, row.get("verb") or "",
                    row.get("noun") or "", line, name, frames)  # fmt: skip
        )
    if problems:
        raise _problems(path, problems)
    if not out:
        raise SegmentError(f"{path}: no segments listed")
    return out


def check_segments(
    segments: list[Segment], durations: dict[str, float], *, path: str | Path = "segments"
) -> tuple[list[Segment], list[str]]:
    """(segments to prepare, problems to report) given each video's duration.

    `durations` is seconds per video (frames with frames=True: the frame count). A segment of
    a video not in `durations` is dropped; one starting at or after the end is dropped; one
    ending after the end is kept (its frames stop at the last one); overlapping segments of
    one video are kept. Every case is reported as `file:line: why`.
    """
    problems: list[str] = []
    keep: list[Segment] = []
    for s in segments:
        where = f"{path}:{s.line}"
        if s.video not in durations:
            problems.append(f"{where}: no video {s.video!r}; segment {s.name} skipped")
            continue
        dur = durations[s.video]
        unit = "" if s.frames else " s"
        last = dur - 1 if s.frames else dur
        if s.start >= dur:
            problems.append(f"{where}: segment {s.name} starts at {s.start:g}{unit}, past the end of "
                            f"{s.video} ({dur:g}{' frames' if s.frames else ' s'}); skipped")  # fmt: skip
            continue
        if s.end > last:
            problems.append(f"{where}: segment {s.name} ends at {s.end:g}{unit}, past the end of "
                            f"{s.video} ({dur:g}{' frames' if s.frames else ' s'}); cut at the end")  # fmt: skip
        keep.append(s)
    by_video: dict[str, list[Segment]] = {}
    for s in keep:
        by_video.setdefault(s.video, []).append(s)
    for segs in by_video.values():
        segs = sorted(segs, key=lambda s: (s.start, s.end))
        reach: Segment | None = None  # the segment reaching furthest so far
        for s in segs:
            if reach is not None and (s.start <= reach.end if s.frames else s.start < reach.end):
                problems.append(f"{path}:{s.line}: segment {s.name} overlaps {reach.name} (line {reach.line})")
            if reach is None or s.end > reach.end:
                reach = s
    return keep, problems


def segment_frame_range(segment: Segment, frame_times_s: np.ndarray) -> tuple[int, int]:
    """[first, stop) frame indices of the segment in the decoded video.

    Seconds: the frames whose pts lies in [start, end) (exact on variable-rate video);
    frames: start..end inclusive, cut at the video's last frame.
    """
    n = len(frame_times_s)
    if segment.frames:
        return min(int(segment.start), n), min(int(segment.end) + 1, n)
    ft = np.asarray(frame_times_s, dtype=np.float64)
    first = int(np.searchsorted(ft, segment.start, side="left"))
    stop = int(np.searchsorted(ft, segment.end, side="left"))
    return first, stop


def extend_range(first: int, stop: int, min_frames: int, num_frames: int) -> tuple[np.ndarray, dict | None]:
    """Source frame index of each output frame, extending a short segment to `min_frames`.

    The rule of `prepare`'s EGTEA clips: half of the missing frames (rounded down) come from
    before the segment (as many as exist), the rest after it; what the video cannot give is
    filled by repeating the edge frame. Returns the indices [max(n, min_frames)] and the
    manifest note (None when not extended) with the same keys as prepare's.
    """
    n = stop - first
    if n <= 0:
        raise ValueError(f"empty frame range [{first}, {stop})")
    src = np.arange(first, stop)
    if n >= min_frames:
        return src, None
    need = min_frames - n
    before = min(need // 2, first)
    after = need - before
    got_after = min(after, num_frames - stop)
    method = "session" if got_after == after else ("session+repeat" if before or got_after else "repeat")
    if method == "repeat":
        before, after = need // 2, need - need // 2
        pre, post = np.arange(0), np.arange(0)
    else:
        pre, post = np.arange(first - before, first), np.arange(stop, stop + got_after)
    pad_pre, pad_post = before - len(pre), after - len(post)
    first_src = pre[0] if len(pre) else first
    last_src = post[-1] if len(post) else stop - 1
    out = np.concatenate([np.full(pad_pre, first_src), pre, src, post, np.full(pad_post, last_src)])
    note = {"method": method, "before": before, "after": after, "source_frames": n}
    return out.astype(np.int64), note


_NAME = re.compile(r"^(?P<video>.+)__(?P<start>F?\d+)_(?P<end>F?\d+)(?:-(?P<k>\d+))?$")


def parse_segment_name(name: str) -> tuple[str, str, str]:
    """(video, start, end) fields of a clip name made by `read_segments`."""
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"not a segment clip name: {name!r}")
    return m["video"], m["start"], m["end"]
