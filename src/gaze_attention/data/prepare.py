"""Offline data preparation: raw videos + gaze -> frames, optical flow, gaze arrays, manifest.

Two inputs are accepted (`detect_layout`):

- EGTEA Gaze+ as released: `cropped_clips/<session>/<clip>.mp4`, `gaze_data/<session>.txt`
  (BeGaze), `action_annotation/` split lists and index files; optional full session videos
  `videos/<session>.mp4` (used to extend short clips with real neighbouring frames).
- Own recordings: `videos/<clip>.mp4`, `gaze/<clip>.csv` (`frame,x,y[,type]`, normalised),
  `labels.csv` (`clip,label[,split][,verb][,noun]` with a header), optional `classes.txt`.

Output (the reference's layout plus gaze and a manifest; see docs/CONTRACTS.md):
`images_rgb/<clip>/0001.jpg`, `images_flow/<clip>/{u,v}/0001.jpg`, `gaze/<clip>.npy`,
`annotations/`, `manifest.jsonl`. Each clip is written under `.tmp/` and renamed into place
when complete, then recorded in the manifest; a rerun skips recorded clips and redoes others.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import av
import cv2
import numpy as np

from gaze_attention.data.begaze import (
    FIXATION,
    NONE,
    GazeFormatError,
    SessionGaze,
    read_begaze,
    read_gaze_csv,
)
from gaze_attention.data.egtea import (
    AnnotationError,
    SplitEntry,
    build_vocabulary,
    check_split_lists,
    clip_name_problem,
    find_split_files,
    parse_clip_name,
    read_manifests,
    read_split_checked,
)
from gaze_attention.data.flow import FLOW_METHODS, FlowComputer
from gaze_attention.data.shards import (
    Shard,
    atomic_copy,
    atomic_write_text,
    estimate_message,
    folder_lock,
    manifest_name,
)
from gaze_attention.errors import GazeAttentionError

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SETTINGS_FILE = "prepare.json"


class PrepareError(GazeAttentionError, RuntimeError):
    """The run cannot start (bad input folder, conflicting earlier output)."""


class ClipError(RuntimeError):
    """One clip cannot be prepared; the others go on."""


@dataclass
class ClipJob:
    """Everything a worker needs to prepare one clip (picklable)."""

    name: str
    video: str
    label: int
    verb: int
    noun: int
    splits: list[str]
    session: str | None = None
    start_frame: int = 0  # session frame of the clip's first frame (0 for own recordings)
    session_video: str | None = None
    gaze_source: str = "missing"  # "begaze" | "csv" | "missing"
    gaze_rows: np.ndarray | None = None  # [N, 3] gaze of session frames gaze_offset..
    gaze_offset: int = 0
    gaze_error: str | None = None  # why the gaze could not be read (the clip fails)


@dataclass
class PrepareResult:
    """Outcome of a `prepare` run."""

    out_dir: Path
    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [
            f"prepared {len(self.prepared)} clip(s), skipped {len(self.skipped)} already done, "
            f"failed {len(self.failed)} in {self.seconds:.1f} s -> {self.out_dir}"
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"FAILED {clip}: {why}" for clip, why in self.failed]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- video


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 24.0


def decode_video(
    path: str | Path, size: tuple[int, int], start: int = 0, stop: int | None = None
) -> list[np.ndarray]:
    """Decode frames [start, stop) of a video, resized to size=(w, h), as BGR uint8 [h, w, 3].

    With start > 0 it seeks to the keyframe before `start` and decodes forward, so only the
    needed part of a long session video is read.
    """
    w, h = size
    out: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = _fps(stream)
        tb = stream.time_base
        if start > 0 and tb is not None:
            container.seek(int(start / fps / tb), stream=stream, backward=True)
        index = None
        for frame in container.decode(stream):
            if frame.pts is not None and tb is not None and start > 0:
                index = round(float(frame.pts * tb) * fps)
            else:
                index = 0 if index is None else index + 1
            if index < start:
                continue
            if stop is not None and index >= stop:
                break
            img = frame.to_ndarray(format="bgr24", width=w, height=h, interpolation="AREA")
            out.append(img)
    return out


def _extend(
    frames: list[np.ndarray],
    min_frames: int,
    session_video: str | None,
    start_frame: int,
    size: tuple[int, int],
) -> tuple[list[np.ndarray], np.ndarray, dict | None]:
    """Extend a short clip to `min_frames`: session frames around it, else repeated edges.

    Returns the frames, the session frame each came from [L] (edge copies repeat the edge's
    index, so they also repeat its gaze), and the manifest note (None when not extended).
    """
    n = len(frames)
    src = np.arange(start_frame, start_frame + n)
    if n >= min_frames:
        return frames, src, None
    need = min_frames - n
    before = min(need // 2, start_frame)
    after = need - before
    method = "repeat"
    pre: list[np.ndarray] = []
    post: list[np.ndarray] = []
    if session_video is not None:
        try:
            if before:
                pre = decode_video(session_video, size, start_frame - before, start_frame)
            post = decode_video(session_video, size, start_frame + n, start_frame + n + after)
            method = "session"
        except (av.error.FFmpegError, OSError):
            pre, post = [], []
        if len(pre) < before or len(post) < after:
            method = "session+repeat" if pre or post else "repeat"
    if method == "repeat":
        before, after = need // 2, need - need // 2
        pre, post = [], []
    pre_src = list(range(start_frame - len(pre), start_frame))
    post_src = list(range(start_frame + n, start_frame + n + len(post)))
    # Whatever the session video could not give is filled by repeating the edge frames.
    pad_pre, pad_post = before - len(pre), after - len(post)
    first = pre[0] if pre else frames[0]
    last = post[-1] if post else frames[-1]
    out = [first] * pad_pre + pre + frames + post + [last] * pad_post
    first_src = pre_src[0] if pre_src else start_frame
    last_src = post_src[-1] if post_src else start_frame + n - 1
    all_src = [first_src] * pad_pre + pre_src + list(src) + post_src + [last_src] * pad_post
    note = {"method": method, "before": before, "after": after, "source_frames": n}
    return out, np.asarray(all_src), note


# ----------------------------------------------------------------------------- one clip


def _write_jpegs(folder: Path, images, quality: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    for i, img in enumerate(images):
        path = folder / f"{i + 1:04d}.jpg"
        # Encode here and write with Python: cv2.imwrite only returns False, this says why.
        ok, buf = cv2.imencode(".jpg", img, params)
        if not ok:
            raise ClipError(f"cannot encode {path}")
        try:
            with open(path, "wb") as fh:
                fh.write(buf)
        except OSError as e:
            from gaze_attention.errors import describe_os_error

            raise ClipError(f"cannot write {describe_os_error(e)}") from None


def inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether `path` lies strictly below `root`, judged on the normalised absolute paths."""
    r = os.path.normpath(os.path.abspath(root))
    q = os.path.normpath(os.path.abspath(path))
    return q != r and os.path.commonpath([r, q]) == r


def _remove(path: Path, root: Path) -> None:
    """Delete a file or folder the run writes; refuses anything not strictly inside `root`.

    Clip names are validated where they are read; this is the second line of defence, so a
    name that slipped through can never make `prepare` delete outside its output folder. A
    symbolic link is removed itself, never followed.
    """
    if not inside(root, path):
        raise PrepareError(f"refusing to delete {path}: it is not inside the output folder {root}")
    if path.is_symlink():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _outputs(out: Path, name: str, flow: str) -> list[Path]:
    paths = [out / "images_rgb" / name, out / "gaze" / f"{name}.npy"]
    if flow != "none":
        paths.append(out / "images_flow" / name)
    return paths


def process_clip(
    job: ClipJob,
    out_dir: str | Path,
    flow: str = "tvl1",
    size: tuple[int, int] = (340, 256),
    min_frames: int = 24,
    jpeg_quality: int = 95,
    flow_device: str = "auto",
) -> dict:
    """Prepare one clip and return its manifest record; raises ClipError with the reason.

    flow_device: where `tvl1-torch` runs (auto: the GPU when there is one)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    if job.gaze_error is not None:
        raise ClipError(job.gaze_error)
    if not Path(job.video).is_file():
        raise ClipError(f"missing video {job.video}")
    try:
        frames = decode_video(job.video, size)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise ClipError(f"cannot decode {job.video}: {e}") from None
    if not frames:
        raise ClipError(f"no frames decoded from {job.video}")
    n_src = len(frames)
    frames, src, ext = _extend(frames, min_frames, job.session_video, job.start_frame, size)

    gaze = np.full((len(frames), 3), np.nan, dtype=np.float32)  # [L, 3] x, y, event
    gaze[:, 2] = NONE
    if job.gaze_rows is not None:
        rel = src - job.gaze_offset
        ok = (rel >= 0) & (rel < len(job.gaze_rows))
        gaze[ok] = job.gaze_rows[rel[ok]]

    why = clip_name_problem(job.name)
    if why is not None:
        raise ClipError(why)
    tmp = out / ".tmp" / job.name
    _remove(tmp, out)
    tmp.mkdir(parents=True)
    _write_jpegs(tmp / "rgb", frames, jpeg_quality)
    if flow != "none":
        grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
        uv = FlowComputer(flow, device=flow_device).video(grey)  # [L, H, W, 2]
        _write_jpegs(tmp / "flow" / "u", uv[..., 0], jpeg_quality)
        _write_jpegs(tmp / "flow" / "v", uv[..., 1], jpeg_quality)
    np.save(tmp / "gaze.npy", gaze)

    # Each rename is atomic; the manifest line written afterwards marks the clip complete.
    rgb_dst, gaze_dst = out / "images_rgb" / job.name, out / "gaze" / f"{job.name}.npy"
    flow_dst = out / "images_flow" / job.name
    for dst in (rgb_dst, gaze_dst, flow_dst):
        _remove(dst, out)
    os.replace(tmp / "rgb", rgb_dst)
    if flow != "none":
        os.replace(tmp / "flow", flow_dst)
    os.replace(tmp / "gaze.npy", gaze_dst)
    _remove(tmp, out)

    finite = np.isfinite(gaze[:, 0])
    return {
        "clip": job.name,
        "label": job.label,
        "verb": job.verb,
        "noun": job.noun,
        "splits": job.splits,
        "num_frames": len(frames),
        "source_frames": n_src,
        "extended": ext,
        "session": job.session,
        "start_frame": job.start_frame,
        "gaze": job.gaze_source,
        "gaze_coverage": round(float(finite.mean()), 4),
        "fixation_coverage": round(float((finite & (gaze[:, 2] == FIXATION)).mean()), 4),
        "flow": flow,
        "size": list(size),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _die_with_parent(parent: int) -> None:
    """End this worker when the `prepare` process that started it dies, even by SIGKILL.

    Linux: the kernel sends SIGKILL on the parent's death (PR_SET_PDEATHSIG). Elsewhere, and as
    a fallback, a daemon thread polls the parent pid. Without this, killed runs left their
    workers (and multiprocessing's resource tracker, which waits for them) running.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_init(parent: int | None = None) -> None:
    if parent is not None:
        _die_with_parent(parent)
    # One OpenCV thread per worker process: the processes already fill the cores.
    cv2.setNumThreads(1)


def _run_job(args: tuple) -> tuple[str, dict | None, str | None]:
    job, out_dir, flow, size, min_frames, quality, device = args
    try:
        return job.name, process_clip(job, out_dir, flow, size, min_frames, quality, device), None
    except ClipError as e:
        return job.name, None, str(e)
    except Exception as e:  # a bug or an unexpected library error must not stop the others
        return job.name, None, f"{type(e).__name__}: {e}"


# ----------------------------------------------------------------------------- inputs


def detect_layout(raw_dir: str | Path) -> str:
    """'egtea' (cropped_clips/ + split lists) or 'own' (videos/ + labels.csv)."""
    raw = Path(raw_dir)
    if (raw / "labels.csv").is_file() and (raw / "videos").is_dir():
        return "own"
    if (raw / "cropped_clips").is_dir():
        return "egtea"
    raise PrepareError(
        f"{raw}: neither an EGTEA Gaze+ folder (cropped_clips/, gaze_data/, action_annotation/) "
        "nor an own-recordings folder (videos/, gaze/, labels.csv)"
    )


def _by_stem(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """Files of a folder by lower-case stem (EGTEA mixes 'R03' and 'r03' in session names)."""
    if not folder.is_dir():
        return {}
    return {p.stem.lower(): p for p in folder.iterdir() if p.suffix.lower() in exts}


def _annotation_dir(raw: Path, annotations: str | Path | None) -> Path:
    ann_dir = Path(annotations) if annotations else raw / "action_annotation"
    if not find_split_files(ann_dir) and find_split_files(raw):
        ann_dir = raw
    return ann_dir


def _problems_error(problems: list[str]) -> AnnotationError:
    return AnnotationError(
        f"{len(problems)} problem(s) in the annotations; nothing was prepared:\n  " + "\n  ".join(problems)
    )


def read_split_lists(ann_dir: Path, splits: list[int] | None) -> dict[int, dict[str, list[SplitEntry]]]:
    """The chosen split lists, checked as a whole; AnnotationError listing every problem."""
    files = find_split_files(ann_dir)
    if not files:
        raise PrepareError(f"{ann_dir}: no train_split<N>.txt / test_split<N>.txt files")
    chosen = sorted(files) if splits is None else splits
    for n in chosen:
        if n not in files:
            raise PrepareError(f"{ann_dir}: no split {n} (have {sorted(files)})")
    problems: list[str] = []
    lists: dict[int, dict[str, list[SplitEntry]]] = {}
    for n in chosen:
        lists[n] = {}
        for part, path in files[n].items():
            lists[n][part], bad = read_split_checked(path)
            problems += bad
    problems += check_split_lists(ann_dir, {n: files[n] for n in chosen}, lists)
    if problems:
        raise _problems_error(problems)
    return lists


def _egtea_jobs(
    raw: Path, ann_dir: Path, splits: list[int] | None, warn: Callable[[str], None]
) -> tuple[list[ClipJob], dict[int, dict[str, list[SplitEntry]]]]:
    lists = read_split_lists(ann_dir, splits)
    session_videos = _by_stem(raw / "videos", VIDEO_EXTS)
    session_videos.update(_by_stem(raw / "raw_videos", VIDEO_EXTS))
    jobs: dict[str, ClipJob] = {}
    for n, parts in lists.items():
        for part, entries in parts.items():
            for e in entries:
                if e.name in jobs:
                    jobs[e.name].splits.append(f"{part}{n}")
                    continue
                try:
                    cn = parse_clip_name(e.name)
                    session, start = cn.session, cn.start_frame
                except ValueError:
                    session, start = None, 0
                    warn(f"{e.name}: not an EGTEA clip name; no session gaze or video for it")
                video = raw / "cropped_clips" / (session or "") / f"{e.name}.mp4"
                if not video.is_file() and (raw / "cropped_clips" / f"{e.name}.mp4").is_file():
                    video = raw / "cropped_clips" / f"{e.name}.mp4"
                sv = session_videos.get(session.lower()) if session else None
                jobs[e.name] = ClipJob(
                    name=e.name,
                    video=str(video),
                    label=e.action,
                    verb=e.verb,
                    noun=e.noun,
                    splits=[f"{part}{n}"],
                    session=session,
                    start_frame=start,
                    session_video=str(sv) if sv else None,
                )
    return list(jobs.values()), lists


def _read_labels(raw: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of labels.csv and the class names; AnnotationError listing every bad line."""
    path = raw / "labels.csv"
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
        ) from None
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "clip" not in cols or "label" not in cols:
            raise AnnotationError(f"{path}:1: header must name at least 'clip' and 'label'")
        rows = []
        first: dict[str, int] = {}
        for lineno, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            where = f"{path}:{lineno}"
            if not row.get("clip") or not row.get("label"):
                problems.append(f"{where}: empty clip or label")
                continue
            why = clip_name_problem(row["clip"])
            if why is not None:
                problems.append(f"{where}: {why}")
                continue
            if row["clip"] in first:
                problems.append(
                    f"{where}: clip {row['clip']} is listed twice: also at {path}:{first[row['clip']]}"
                )
                continue
            first[row["clip"]] = lineno
            split = row.get("split") or "train"
            if split not in ("train", "test"):
                problems.append(f"{where}: split must be train or test: {split!r}")
                continue
            row["split"] = split
            row["_line"] = str(lineno)
            rows.append(row)
    if not rows and not problems:
        raise AnnotationError(f"{path}: no clips listed")
    classes_file = raw / "classes.txt"
    if classes_file.is_file():
        classes = [s.strip() for s in classes_file.read_text(encoding="utf-8-sig").splitlines() if s.strip()]
        known = set(classes)
        problems += [
            f"{path}:{r['_line']}: label {r['label']!r} not in {classes_file}"
            for r in rows
            if r["label"] not in known
        ]
    else:
        classes = sorted({r["label"] for r in rows})
    if problems:
        raise _problems_error(problems)
    return rows, classes


def _own_jobs(raw: Path, ann_out: Path | None) -> tuple[list[ClipJob], dict]:
    """Jobs for own recordings; writes the EGTEA-style annotation files to `ann_out`."""
    rows, classes = _read_labels(raw)
    cid = {c: i for i, c in enumerate(classes)}
    verbs = sorted({r["verb"] for r in rows if r.get("verb")}) or classes
    nouns = sorted({r["noun"] for r in rows if r.get("noun")}) or classes
    vid, nid = {v: i for i, v in enumerate(verbs)}, {n: i for i, n in enumerate(nouns)}
    videos = {p.stem: p for p in (raw / "videos").iterdir() if p.suffix.lower() in VIDEO_EXTS}
    jobs, lines = [], {"train": [], "test": []}
    for r in rows:
        name = r["clip"]
        a = cid[r["label"]]
        v = vid[r["verb"]] if r.get("verb") else vid.get(r["label"], a)
        n = nid[r["noun"]] if r.get("noun") else nid.get(r["label"], a)
        lines[r["split"]].append(f"{name} {a + 1} {v + 1} {n + 1}")
        gaze = raw / "gaze" / f"{name}.csv"
        jobs.append(
            ClipJob(
                name=name,
                video=str(videos.get(name, raw / "videos" / f"{name}.mp4")),
                label=a,
                verb=v,
                noun=n,
                splits=[f"{r['split']}1"],
                gaze_source="csv" if gaze.is_file() else "missing",
            )
        )
    if ann_out is not None:
        ann_out.mkdir(parents=True, exist_ok=True)
        for fname, names in (("action_idx", classes), ("verb_idx", verbs), ("noun_idx", nouns)):
            atomic_write_text(ann_out / f"{fname}.txt", "".join(f"{s} {i + 1}\n" for i, s in enumerate(names)))
        for part, ls in lines.items():
            atomic_write_text(ann_out / f"{part}_split1.txt", "".join(x + "\n" for x in ls))
    return jobs, lines


def _attach_gaze(
    jobs: list[ClipJob],
    gaze_files: dict[str, Path],
    reader: Callable[[Path], SessionGaze],
    key: Callable[[ClipJob], str | None],
    margin: int,
    pool: _LazyPool,
    allow_missing: bool,
    warn: Callable[[str], None],
) -> None:
    """Read each needed gaze file once (in parallel) and give each job its rows."""
    needed = sorted({k for j in jobs if (k := key(j)) is not None and k.lower() in gaze_files})
    sessions: dict[str, SessionGaze | str] = {}
    paths = [gaze_files[k.lower()] for k in needed]
    if pool.workers > 1 and len(paths) > 1:
        results = list(pool.get().map(_read_gaze_safe, [(reader, p) for p in paths]))
    else:
        results = [_read_gaze_safe((reader, p)) for p in paths]
    for k, res in zip(needed, results, strict=True):
        sessions[k] = res
        if isinstance(res, SessionGaze) and res.malformed:
            warn(res.report())
    for j in jobs:
        k = key(j)
        res = sessions.get(k) if k is not None else None
        if res is None:
            where = f"no gaze file for {k or j.name}"
            if allow_missing:
                j.gaze_source = "missing"
            else:
                j.gaze_error = f"{where} (use --allow-missing-gaze to prepare it without gaze)"
            continue
        if isinstance(res, str):
            j.gaze_error = res
            continue
        if j.session is None:  # own recording: the file is the clip's own gaze
            lo, hi = 0, res.num_frames
        else:
            # The name's frame range is a hint; leave room for a longer decoded video.
            cn = parse_clip_name(j.name)
            lo = max(j.start_frame - margin, 0)
            hi = cn.end_frame + 1 + margin + cn.num_frames
        j.gaze_rows = res.frames(lo, max(hi, lo + 1))
        j.gaze_offset = lo
        j.gaze_source = "begaze" if j.session is not None else "csv"


class _LazyPool:
    """A process pool started on first use (starting one costs seconds: each worker imports
    the package), shared by the gaze-file and clip stages."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._ex: ProcessPoolExecutor | None = None

    def get(self) -> ProcessPoolExecutor:
        if self._ex is None:
            self._ex = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_worker_init,
                initargs=(os.getpid(),),
            )
        return self._ex

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(cancel_futures=True)
            self._ex = None


def _read_gaze_safe(args: tuple) -> SessionGaze | str:
    reader, path = args
    try:
        return reader(path)
    except (GazeFormatError, OSError, UnicodeDecodeError) as e:
        return str(e) if str(path) in str(e) else f"{path}: {e}"


# ----------------------------------------------------------------------------- the run


def _load_done(out: Path, flow: str) -> dict[str, dict]:
    # A line cut short by a killed run is skipped by read_manifest: that clip is redone.
    return {
        name: rec
        for name, rec in read_manifests(out).items()
        if all(p.exists() for p in _outputs(out, name, flow))
    }


def _check_settings(out: Path, settings: dict, sharded: bool = False) -> None:
    """Refuse to mix clips prepared with different settings in one folder.

    Under a lock and written atomically: shards starting together on one folder all see the
    settings of whichever came first, and a shard with other settings is refused even before
    any clip is recorded."""
    path = out / SETTINGS_FILE
    with folder_lock(out):
        manifests = [out / "manifest.jsonl", *out.glob("manifest.shard-*-of-*.jsonl")]
        started = any(m.is_file() and m.stat().st_size > 0 for m in manifests)
        if path.is_file() and (started or sharded):
            old = json.loads(path.read_text())
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            if diff:
                what = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items())
                raise PrepareError(f"{out} was prepared with other settings ({what}); use a new output folder")
        atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


def _copy_annotations(ann_dir: Path, dst: Path, splits: list[int]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for fname in ("action_idx.txt", "verb_idx.txt", "noun_idx.txt"):
        if (ann_dir / fname).is_file():
            atomic_copy(ann_dir / fname, dst / fname)
    for n, files in find_split_files(ann_dir).items():
        if n in splits:
            for p in files.values():
                atomic_copy(p, dst / p.name)


def prepare(
    raw_dir: str | Path,
    out_dir: str | Path,
    splits: list[int] | None = None,
    flow: str = "tvl1",
    size: tuple[int, int] = (340, 256),
    workers: int = 1,
    min_frames: int = 24,
    jpeg_quality: int = 95,
    annotations: str | Path | None = None,
    allow_missing_gaze: bool = False,
    progress: bool = True,
    *,
    shard: Shard | str | None = None,
    flow_device: str = "auto",
    estimate: bool = False,
) -> PrepareResult:
    """Prepare a raw data set (EGTEA layout or own recordings) into `out_dir`.

    splits: split numbers to prepare (default: all present). flow: one of tvl1 (the paper's),
    dis, farneback, none. size: (width, height) of the stored frames. min_frames: shorter clips
    are extended (session frames around the clip when `videos/<session>.mp4` exists, else the
    edge frames repeated). annotations: folder of split lists to use instead of the raw one.
    Finished clips of an earlier run (in `manifest.jsonl`) are skipped. With workers > 1 the
    worker processes are spawned, so scripts must call this under `if __name__ == "__main__":`.
    shard: `Shard` or "I/N": prepare only that shard's clips, recorded in its own manifest part
    (see `gaze_attention.data.shards`). flow_device: where `tvl1-torch` runs. estimate: print
    the expected run time (from a probe of the first clip) to stderr before starting.
    """
    t0 = time.perf_counter()
    if flow not in FLOW_METHODS:
        raise PrepareError(f"flow must be one of {', '.join(FLOW_METHODS)}; got {flow!r}")
    raw, out = Path(raw_dir), Path(out_dir)
    if not raw.is_dir():
        raise PrepareError(f"{raw}: no such folder")
    layout = detect_layout(raw)
    # Every annotation problem is reported before anything is written or decoded.
    if layout == "egtea":
        read_split_lists(_annotation_dir(raw, annotations), splits)
    else:
        _read_labels(raw)
    result = PrepareResult(out_dir=out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(shard, str):
        try:
            shard = Shard.parse(shard)
        except ValueError as e:
            raise PrepareError(str(e)) from None
    _check_settings(out, {"flow": flow, "size": list(size), "min_frames": min_frames}, shard is not None)

    pool = _LazyPool(workers)  # one set of worker processes for gaze files and clips
    scale = _ScaleOut(shard, flow_device, estimate, workers)
    try:
        return _prepare(
            raw, out, layout, splits, flow, size, pool, min_frames, jpeg_quality, annotations,
            allow_missing_gaze, progress, result, t0, scale,
        )  # fmt: skip
    finally:
        pool.close()


def _prepare(
    raw: Path,
    out: Path,
    layout: str,
    splits: list[int] | None,
    flow: str,
    size: tuple[int, int],
    pool: _LazyPool,
    min_frames: int,
    jpeg_quality: int,
    annotations: str | Path | None,
    allow_missing_gaze: bool,
    progress: bool,
    result: PrepareResult,
    t0: float,
    scale: _ScaleOut | None = None,
) -> PrepareResult:
    scale = scale or _ScaleOut()
    margin = max(min_frames, 1)
    if layout == "egtea":
        ann_dir = _annotation_dir(raw, annotations)
        jobs, lists = _egtea_jobs(raw, ann_dir, splits, result.warnings.append)
        _copy_annotations(ann_dir, out / "annotations", sorted(lists))
        entries = [e for parts in lists.values() for es in parts.values() for e in es]
        build_vocabulary(out / "annotations", entries)  # fail now on a malformed index file
        _attach_gaze(
            jobs, _by_stem(raw / "gaze_data", (".txt",)), read_begaze, lambda j: j.session,
            margin, pool, allow_missing_gaze, result.warnings.append,
        )  # fmt: skip
    else:
        if splits not in (None, [1]):
            raise PrepareError("own recordings have a single split (1); drop --splits")
        jobs, _ = _own_jobs(raw, out / "annotations")
        _attach_gaze(
            jobs, _by_stem(raw / "gaze", (".csv",)), read_gaze_csv, lambda j: j.name,
            margin, pool, allow_missing_gaze, result.warnings.append,
        )  # fmt: skip

    jobs = scale.select(jobs)
    for d in ("images_rgb", "gaze") + (("images_flow",) if flow != "none" else ()):
        (out / d).mkdir(exist_ok=True)
    scale.clear_tmp(out, jobs)  # half-written clips of a killed run
    done = scale.own(_load_done(out, flow), jobs)
    todo = [j for j in jobs if j.name not in done]
    result.skipped = [j.name for j in jobs if j.name in done]
    for j in jobs:
        if j.name in done:  # a clip prepared for one split may now be wanted by another
            done[j.name]["splits"] = sorted(set(done[j.name].get("splits", [])) | set(j.splits))
    records = dict(done)
    if scale.estimate:
        print(estimate_message(todo, size, flow, scale.device, pool.workers, scale.shard), file=sys.stderr)

    manifest = open(out / manifest_name(scale.shard), "a", encoding="utf-8")
    bar = _progress(len(todo), progress)
    args = [(j, str(out), flow, tuple(size), min_frames, jpeg_quality, scale.device) for j in todo]
    try:
        if pool.workers > 1 and len(todo) > 1:
            futures = [pool.get().submit(_run_job, a) for a in args]
            for fut in as_completed(futures):
                _collect(fut.result(), records, result, manifest, bar)
        else:
            for a in args:
                _collect(_run_job(a), records, result, manifest, bar)
    finally:
        bar.close()
        manifest.close()
    # Rewrite the manifest compactly, in the order of the split lists.
    order = {j.name: i for i, j in enumerate(jobs)}
    _write_manifest(
        out, sorted(records.values(), key=lambda r: order.get(r["clip"], 1 << 30)), manifest_name(scale.shard)
    )
    scale.clear_tmp(out, jobs)
    result.seconds = time.perf_counter() - t0
    return result


def _collect(res, records, result: PrepareResult, manifest, bar) -> None:
    name, rec, err = res
    if rec is not None:
        if rec["gaze"] != "missing" and rec["gaze_coverage"] == 0:
            result.warnings.append(
                f"{name}: its gaze file gives no usable sample on the clip's frames (coverage 0: "
                "non-finite coordinates, or a recording that does not cover the clip)"
            )
        records[name] = rec
        manifest.write(json.dumps(rec) + "\n")
        manifest.flush()
        result.prepared.append(name)
    else:
        result.failed.append((name, err or "unknown error"))
        bar.set_postfix(failed=len(result.failed))
    bar.update(1)


def _write_manifest(out: Path, records: list[dict], name: str = "manifest.jsonl") -> None:
    tmp = out / f"{name}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    os.replace(tmp, out / name)


class _ScaleOut:
    """What `--shard`, the flow device and the estimate change in a run, kept in one place."""

    def __init__(
        self, shard: Shard | None = None, device: str = "auto", estimate: bool = False, workers: int = 1
    ) -> None:
        self.shard, self.device, self.estimate, self.workers = shard, device, estimate, workers

    def select(self, jobs: list[ClipJob]) -> list[ClipJob]:
        return jobs if self.shard is None else [j for j in jobs if self.shard.owns(j.name)]

    def own(self, done: dict[str, dict], jobs: list[ClipJob]) -> dict[str, dict]:
        """A shard's manifest part keeps its own clips only; other shards record theirs."""
        if self.shard is None:
            return done
        names = {j.name for j in jobs}
        return {k: v for k, v in done.items() if k in names}

    def clear_tmp(self, out: Path, jobs: list[ClipJob]) -> None:
        """Half-written clips: all of `.tmp/` for a whole run, a shard's own clips only when
        other shards may be writing theirs there right now."""
        if self.shard is None:
            _remove(out / ".tmp", out)
            return
        for j in jobs:
            _remove(out / ".tmp" / j.name, out)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="clip", desc="prepare", disable=not enabled, file=sys.stderr)
