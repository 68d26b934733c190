"""The segments layout: labelled time segments of long recordings, gaze on the recording's clock.

RAW/segments.csv (`video,start,end,label[,split,verb,noun]`), RAW/videos/<video>.<ext> (any
container PyAV opens, or an Aria `.vrs`), RAW/gaze/<video>.csv (any format `read_gaze`
detects), optional RAW/classes.txt and Aria calibration (RAW/calibration/<video>.json[l] or
RAW/calibration.json[l] for all). `--segments`, `--videos`, `--gaze` and `--calibration`
point at a download's own files instead (a folder, one file, or a path with `{video}`).

Each long video is opened once here (its frame times), its gaze read, labelled by I-VT and
put on its frames once; each segment becomes a `ClipJob` naming the video frames it takes
(extended to min_frames) and carrying those frames' gaze. The clip stage cuts them with
exact seeks (`read_frame_range`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gaze_attention.data.begaze import SessionGaze
from gaze_attention.data.egtea import AnnotationError
from gaze_attention.data.prepare.labels import (
    label_ids,
    label_vocabulary,
    read_classes,
    write_annotation_files,
)
from gaze_attention.data.prepare.options import VIDEO_EXTS, ClipJob, PrepareError, PrepareOptions
from gaze_attention.data.sources import (
    IVTConfig,
    Segment,
    aria,
    check_segments,
    classify_fixations,
    ego4d,
    extend_range,
    read_gaze,
    read_segments,
    segment_frame_range,
    to_session_gaze,
    vrs,
)
from gaze_attention.data.sources.detect import detect_format
from gaze_attention.errors import GazeAttentionError

SEGMENTS_FILE = "segments.csv"
LONG_VIDEO_EXTS = (*VIDEO_EXTS, ".vrs", ".m4v", ".ts", ".mts", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
GAZE_EXTS = (".csv", ".txt", ".tsv")
CALIBRATION_EXTS = (".json", ".jsonl")


def segments_file(raw: Path, opts: PrepareOptions) -> Path:
    return Path(opts.segments) if opts.segments else raw / SEGMENTS_FILE


def is_segments_layout(raw: Path, opts: PrepareOptions | None = None) -> bool:
    """A segments file given, or RAW/segments.csv with RAW/videos/ (or --videos)."""
    if opts is not None and opts.segments:
        return True
    videos = (opts is not None and opts.videos) or (raw / "videos").is_dir()
    return (raw / SEGMENTS_FILE).is_file() and bool(videos)


def read_segment_labels(raw: Path, opts: PrepareOptions) -> tuple[list[Segment], list[str]]:
    """The segments and the class names; AnnotationError listing every bad line."""
    path = segments_file(raw, opts)
    if not path.is_file():
        raise PrepareError(f"{path}: no such segments file (video,start,end,label[,split,verb,noun])")
    segs = read_segments(path, frames=opts.segments_in_frames)
    classes, problems = read_classes(raw, [(f"{path}:{s.line}", s.label) for s in segs])
    if problems:
        raise AnnotationError(f"{len(problems)} problem(s) in {path}; nothing was prepared: " + "; ".join(problems))
    return segs, classes


def find_file(spec: str | None, default: Path, video: str, exts: tuple[str, ...]) -> Path | None:
    """The file of `video`: `spec` with {video} filled in, a file (one for all), or `<video><ext>`
    in the folder `spec` (default `default`)."""
    if spec and "{video}" in spec:
        p = Path(spec.replace("{video}", video))
        return p if p.is_file() else None
    where = Path(spec) if spec else default
    if where.is_file():
        return where
    for ext in exts:
        for e in (ext, ext.upper()):
            if (where / f"{video}{e}").is_file():
                return where / f"{video}{e}"
    return None


@dataclass
class LongVideo:
    """What the jobs need of one long recording."""

    path: Path
    times: np.ndarray  # [F] seconds from the first frame: the clock of the segments file
    gaze_times: np.ndarray  # [F] the frames' times on the clock their gaze files use by default
    width: int  # of the frames as decoded (sensor orientation for a .vrs)
    height: int

    @property
    def duration(self) -> float:
        step = float(np.median(np.diff(self.times))) if len(self.times) > 1 else 0.0
        return float(self.times[-1]) + step


def open_long_video(path: Path) -> LongVideo:
    """Frame times of a video file (its pts) or of a .vrs (device capture times)."""
    if path.suffix.lower() == ".vrs":
        t = vrs.rgb_frame_times(path)  # device clock, the clock of MPS gaze
        if len(t) == 0:
            raise PrepareError(f"{path}: no RGB frames in the recording")
        w, h = vrs.rgb_image_size(path)
        return LongVideo(path, t - t[0], t, w, h)
    from gaze_attention.video import Video

    v = Video(path)
    return LongVideo(path, v.timestamps, v.timestamps, v.width, v.height)


def read_frame_range(
    path: str | Path, size: tuple[int, int], start: int, stop: int
) -> tuple[list[np.ndarray], list[str], tuple[int, int]]:
    """Frames [start, stop) of a long recording, BGR uint8 [h, w, 3] at size = (w, h), with the
    decoder's notes and the source frame size (w, h).

    Video files through the one decoder (seek to the keyframe before `start`, decode forward
    by pts); `.vrs` through projectaria_tools, in the sensor's orientation.
    """
    path = Path(path)
    if path.suffix.lower() != ".vrs":
        from gaze_attention.video import Video

        v = Video(path)
        return v.read(size, start, stop, pixel_format="bgr24"), list(v.notes), (v.width, v.height)
    import cv2

    frames, source = [], (0, 0)
    for _, img in vrs.read_rgb_frames(path, start, stop):  # [H, W, 3] RGB
        source = (img.shape[1], img.shape[0])
        frames.append(cv2.cvtColor(cv2.resize(img, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR))
    return frames, [], source


def _camera(name: str, lv: LongVideo, raw: Path, opts: PrepareOptions, gaze: Path) -> aria.AriaCamera:
    """The RGB camera for Aria angle gaze: a calibration file, else the .vrs's own."""
    cal = find_file(opts.calibration, raw / "calibration", name, CALIBRATION_EXTS)
    if cal is None and not opts.calibration:
        cal = next((raw / f"calibration{e}" for e in CALIBRATION_EXTS if (raw / f"calibration{e}").is_file()), None)
    if cal is not None:
        cam = aria.read_calibration(cal)
    elif lv.path.suffix.lower() == ".vrs":  # the recording's own calibration
        cam = vrs.rgb_camera(lv.path)
    else:
        raise PrepareError(
            f"{gaze}: Aria MPS gaze (angles) needs the RGB camera's calibration to become image points: put "
            f"the device calibration JSON or MPS online_calibration.jsonl at {raw / 'calibration' / (name + '.json')} "
            "(or calibration.json for all videos), or give --calibration"
        )
    # The calibration is of the image as stored (sensor orientation); an upright mp4 is turned.
    w, h = (lv.height, lv.width) if opts.aria_rotate == "cw90" else (lv.width, lv.height)
    return cam.for_image(w, h)


def read_offsets(path: Path) -> dict[str, float]:
    """`video,offset` lines (seconds, gaze time minus video time; a header line is optional)."""
    import csv
    import io
    import math

    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise PrepareError(
            f"--gaze-offset {path}: neither seconds nor a readable file of video,offset lines ({e.strerror or e})"
        ) from None
    out: dict[str, float] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    for cells in reader:
        cells = [c.strip() for c in cells]
        if not any(cells) or cells[0].startswith("#") or (reader.line_num == 1 and cells[0].lower() == "video"):
            continue
        try:
            video, value = cells[0], float(cells[1])
        except (IndexError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise PrepareError(f"{path}:{reader.line_num}: expected video,offset in seconds; got {','.join(cells)!r}")
        out[video] = value
    return out


def offset_of(name: str, opts: PrepareOptions, offsets: dict[str, float] | None) -> float:
    if offsets is None:
        return float(opts.gaze_offset)
    if name not in offsets:
        raise PrepareError(f"{opts.gaze_offset}: no gaze offset for video {name!r} (add a line {name},SECONDS)")
    return offsets[name]


def ivt_config(opts: PrepareOptions) -> IVTConfig:
    return IVTConfig(velocity_deg_s=opts.ivt_velocity, velocity_norm_s=opts.ivt_velocity_norm,
                     min_fixation_s=opts.ivt_min_fixation)  # fmt: skip


def video_gaze(
    name: str, lv: LongVideo, gaze: Path, raw: Path, opts: PrepareOptions, info: Callable[[str], None],
    warn: Callable[[str], None], offset: float = 0.0,
) -> tuple[SessionGaze, str]:  # fmt: skip
    """The per-frame gaze of one long video (I-VT labels where the file gives none), and its source."""
    camera = _camera(name, lv, raw, opts, gaze) if detect_format(gaze) == "aria" else None
    samples = read_gaze(gaze, clock=opts.gaze_clock, camera=camera, rotate=opts.aria_rotate)
    if samples.report:
        warn(samples.report)
    if samples.t is None and not samples.labelled.all():
        # Frame-numbered samples without types: I-VT runs on their frames' times.
        fidx = np.clip(samples.frame, 0, len(lv.gaze_times) - 1)
        timed, summary = classify_fixations(replace(samples, t=lv.gaze_times[fidx]), ivt_config(opts))
        samples = replace(samples, event=timed.event)
    else:
        samples, summary = classify_fixations(samples, ivt_config(opts))
    info(f"gaze {name} ({gaze}, {samples.source}): {summary}")
    min_conf = opts.min_confidence
    if min_conf is None:
        min_conf = ego4d.DEFAULT_MIN_CONFIDENCE if samples.source == "ego4d" else 0.0
    # `offset` (--gaze-offset) is gaze time minus video time; to_session_gaze's moves gaze onto video time.
    session = to_session_gaze(samples, lv.gaze_times, offset_s=-offset, min_confidence=min_conf)
    return session, samples.source


def segment_jobs(
    raw: Path, ann_out: Path, opts: PrepareOptions, warn: Callable[[str], None], info: Callable[[str], None]
) -> list[ClipJob]:
    """One job per segment, in file order; writes the annotation files of split 1 to `ann_out`.

    A missing gaze file fails that video's segments (unless allow_missing_gaze); a gaze file or
    calibration that cannot be used stops the run with its file and line, before anything is
    written. Segments past the end or of a missing video become failing jobs (reported with
    their line), overlaps and segments cut at the end are warnings.
    """
    path = segments_file(raw, opts)
    segs, classes = read_segment_labels(raw, opts)
    videos: dict[str, LongVideo] = {}
    video_problem: dict[str, str] = {}
    for name in dict.fromkeys(s.video for s in segs):
        p = find_file(opts.videos, raw / "videos", name, LONG_VIDEO_EXTS)
        if p is None:
            continue  # check_segments reports its segments
        if p.suffix.lower() == ".vrs" and not vrs.available():
            raise PrepareError(vrs.missing_message(p))
        try:
            videos[name] = open_long_video(p)
        except GazeAttentionError as e:
            video_problem[name] = str(e)
        except OSError as e:
            video_problem[name] = f"cannot read {p}: {e}"
    unit = (lambda lv: len(lv.times)) if opts.segments_in_frames else (lambda lv: lv.duration)
    kept, problems = check_segments(segs, {k: unit(v) for k, v in videos.items()}, path=path)

    def problems_of(s: Segment) -> list[str]:
        return [p for p in problems if p.startswith(f"{path}:{s.line}:")]

    gaze: dict[str, tuple[SessionGaze, str] | None] = {}
    missing: dict[str, str] = {}
    offsets = read_offsets(Path(opts.gaze_offset)) if isinstance(opts.gaze_offset, str) else None
    for name in dict.fromkeys(s.video for s in kept):
        g = find_file(opts.gaze, raw / "gaze", name, GAZE_EXTS)
        if g is None:
            gaze[name] = None
            where = opts.gaze or str(raw / "gaze")
            missing[name] = f"no gaze file for video {name} (looked in {where})"
            continue
        try:
            offset = offset_of(name, opts, offsets)
            gaze[name] = video_gaze(name, videos[name], g, raw, opts, info, warn, offset)
        except GazeAttentionError as e:
            raise PrepareError(str(e)) from None
        except OSError as e:
            raise PrepareError(f"cannot read {e.filename or g}: {e.strerror or e}") from None
        except ValueError as e:  # e.g. a recording whose frame times do not increase
            raise PrepareError(f"{g}: {e}") from None
    kept_names = {s.name for s in kept}
    cid = {c: i for i, c in enumerate(classes)}
    rows = [{"label": s.label, "verb": s.verb, "noun": s.noun} for s in segs]
    verbs, nouns = label_vocabulary(rows, classes)
    vid, nid = {v: i for i, v in enumerate(verbs)}, {n: i for i, n in enumerate(nouns)}
    jobs: list[ClipJob] = []
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for s, row in zip(segs, rows, strict=True):
        a, v, n = label_ids(row, cid, vid, nid)
        lines[s.split].append(f"{s.name} {a + 1} {v + 1} {n + 1}")
        lv = videos.get(s.video)
        job = ClipJob(
            name=s.name, video=str(lv.path) if lv else str(raw / "videos" / s.video), label=a, verb=v, noun=n,
            splits=[f"{s.split}1"], session=s.video, source_frames=[],  # [] until its frames are known
            segment={"video": s.video, "start": s.start, "end": s.end, "file": str(path), "line": s.line},
        )  # fmt: skip
        jobs.append(job)
        if s.name not in kept_names:
            job.problem = video_problem.get(s.video) or (problems_of(s) or [f"{path}:{s.line}: skipped"])[0]
            continue
        for p in problems_of(s):
            warn(p)
        first, stop = segment_frame_range(s, lv.times)
        if stop <= first:
            job.problem = f"{path}:{s.line}: segment {s.name} holds no frame of {lv.path}"
            continue
        src, job.extend_note = extend_range(first, stop, opts.min_frames, len(lv.times))
        job.source_frames = [int(i) for i in src]
        job.start_frame = first
        found = gaze[s.video]
        if found is None:
            job.gaze_missing = True
            if not opts.allow_missing_gaze:
                job.gaze_error = f"{missing[s.video]} (use --allow-missing-gaze to prepare it without gaze)"
            continue
        session, job.gaze_source = found
        lo, hi = int(src.min()), int(src.max()) + 1
        job.gaze_rows, job.gaze_offset = session.frames(lo, hi), lo
    write_annotation_files(ann_out, classes, verbs, nouns, lines)
    return jobs
