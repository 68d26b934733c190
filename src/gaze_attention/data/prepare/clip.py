"""One clip: decode, extend to the minimum length, align gaze, write under `.tmp/`, move into place.

`process_clip` reads top-down; each step below it is a short function. A clip's files are
complete before they appear under their final names (each rename is atomic), and the caller
records the clip in the manifest only after that.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import av
import cv2
import numpy as np

from gaze_attention.data.begaze import FIXATION, NONE
from gaze_attention.data.egtea import clip_name_problem
from gaze_attention.data.flow import FlowComputer
from gaze_attention.data.prepare.options import ClipError, ClipJob, PrepareError
from gaze_attention.errors import describe_os_error
from gaze_attention.video import Video, VideoError, aspect_changes


def decode_video(
    path: str | Path, size: tuple[int, int], start: int = 0, stop: int | None = None
) -> list[np.ndarray]:
    """Decode frames [start, stop) of a video, upright, resized to size=(w, h), as BGR uint8 [h, w, 3].

    The decoder of `gaze_attention.video` (the one `predict` uses): frames indexed in
    presentation order from the stream's start, start > 0 seeks to the keyframe before it.
    """
    return Video(path).read(size, start, stop, pixel_format="bgr24")


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

    flow_device: where `tvl1-torch` runs (auto: the GPU when there is one). The record's
    `notes` (what the decoder or the resize changed: truncated, rotated, aspect) are for the
    run's summary; the caller takes them out before writing the manifest.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    check_job(job)
    if job.source_frames is not None:  # a segment of a long recording
        frames, src, notes, source_size = read_segment(job, size)
        n_src, extended = (job.extend_note or {}).get("source_frames", len(src)), job.extend_note
    else:
        video, frames = read_frames(job.video, size)
        notes, source_size = list(video.notes), (video.width, video.height)
        n_src = len(frames)
        frames, src, extended = _extend(frames, min_frames, job.session_video, job.start_frame, size)
    gaze = align_gaze(job, src)  # [L, 3]
    tmp = write_tmp(out, job.name, frames, gaze, flow, jpeg_quality, flow_device)
    move_into_place(out, job.name, tmp, flow)
    record = clip_record(job, gaze, n_src, extended, flow, size, notes, source_size)
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


# ----------------------------------------------------------------------------- the steps


def check_job(job: ClipJob) -> None:
    """Refuse a job whose inputs are missing, with the advice that fixes all of it."""
    why = clip_name_problem(job.name)
    if why is not None:
        raise ClipError(why)
    if job.problem is not None:
        raise ClipError(job.problem)
    has_video = Path(job.video).is_file()
    if not has_video and job.gaze_missing:
        raise ClipError(
            f"missing video {job.video} and no gaze file for it: add both, or remove the clip from the "
            "annotations (--allow-missing-gaze only lets a clip with a video go without gaze)"
        )
    if job.gaze_error is not None:
        raise ClipError(job.gaze_error)
    if not has_video:
        raise ClipError(f"missing video {job.video}")


def read_frames(path: str, size: tuple[int, int]) -> tuple[Video, list[np.ndarray]]:
    """The clip's decoder and its frames (BGR uint8 [h, w, 3] at `size`)."""
    try:
        video = Video(path)
        frames = video.read(size, pixel_format="bgr24")
    except VideoError as e:  # its message starts with the path
        raise ClipError(f"cannot decode {e}") from None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise ClipError(f"cannot decode {path}: {e}") from None
    if not frames:
        raise ClipError(f"no frames decoded from {path}")
    return video, frames


def read_segment(job: ClipJob, size: tuple[int, int]) -> tuple[list[np.ndarray], np.ndarray, list[str], tuple[int, int]]:
    """A segment's frames cut from its long recording (one seek), the video frame of each [L],
    the decoder's notes and the source frame size."""
    from gaze_attention.data.prepare.segments import read_frame_range

    src = np.asarray(job.source_frames, dtype=np.int64)
    if not len(src):
        raise ClipError(f"{job.video}: the segment has no frames")
    lo, hi = int(src.min()), int(src.max()) + 1
    try:
        decoded, notes, source_size = read_frame_range(job.video, size, lo, hi)
    except VideoError as e:
        raise ClipError(f"cannot decode {e}") from None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise ClipError(f"cannot decode {job.video}: {e}") from None
    if len(decoded) < hi - lo:
        raise ClipError(f"{job.video}: frames {lo}..{hi - 1} asked, {len(decoded)} decoded (a damaged file?)")
    return [decoded[i - lo] for i in src], src, notes, source_size


def align_gaze(job: ClipJob, src: np.ndarray) -> np.ndarray:
    """Gaze [L, 3] (x, y, event) of the frames whose session indices are `src` [L]; nan where none."""
    gaze = np.full((len(src), 3), np.nan, dtype=np.float32)
    gaze[:, 2] = NONE
    if job.gaze_rows is not None:
        rel = src - job.gaze_offset
        ok = (rel >= 0) & (rel < len(job.gaze_rows))
        gaze[ok] = job.gaze_rows[rel[ok]]
    return gaze


def write_tmp(
    out: Path, name: str, frames: list[np.ndarray], gaze: np.ndarray, flow: str, quality: int, device: str
) -> Path:
    """Every file of the clip under OUT/.tmp/<name>/ (rgb/, flow/{u,v}/, gaze.npy)."""
    tmp = out / ".tmp" / name
    remove(tmp, out)
    tmp.mkdir(parents=True)
    _write_jpegs(tmp / "rgb", frames, quality)
    if flow != "none":
        grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
        uv = FlowComputer(flow, device=device).video(grey)  # [L, H, W, 2]
        _write_jpegs(tmp / "flow" / "u", uv[..., 0], quality)
        _write_jpegs(tmp / "flow" / "v", uv[..., 1], quality)
    _write_file(tmp / "gaze.npy", lambda fh: np.save(fh, gaze))
    return tmp


def move_into_place(out: Path, name: str, tmp: Path, flow: str) -> None:
    """Rename the clip's folders and gaze file to their final names (each rename is atomic)."""
    rgb_dst, gaze_dst, flow_dst = out / "images_rgb" / name, out / "gaze" / f"{name}.npy", out / "images_flow" / name
    try:
        for dst in (rgb_dst, gaze_dst, flow_dst):
            remove(dst, out)
        os.replace(tmp / "rgb", rgb_dst)
        if flow != "none":
            os.replace(tmp / "flow", flow_dst)
        os.replace(tmp / "gaze.npy", gaze_dst)
        remove(tmp, out)
    except OSError as e:
        raise ClipError(f"cannot move the clip into place: {describe_os_error(e)}") from None


def clip_record(
    job: ClipJob, gaze: np.ndarray, n_src: int, extended: dict | None, flow: str, size: tuple[int, int],
    notes: list[str], source_size: tuple[int, int],
) -> dict:  # fmt: skip
    finite = np.isfinite(gaze[:, 0])
    notes = list(notes)
    if aspect_changes(*source_size, size):
        notes.append(f"aspect: {source_size[0]}x{source_size[1]}")
    record = {
        "clip": job.name,
        "label": job.label,
        "verb": job.verb,
        "noun": job.noun,
        "splits": job.splits,
        "num_frames": len(gaze),
        "source_frames": n_src,
        "extended": extended,
        "session": job.session,
        "start_frame": job.start_frame,
        "gaze": job.gaze_source,
        "gaze_coverage": round(float(finite.mean()), 4),
        "fixation_coverage": round(float((finite & (gaze[:, 2] == FIXATION)).mean()), 4),
        "flow": flow,
        "size": list(size),
        "notes": notes,
    }
    if job.segment is not None:
        record["segment"] = job.segment
    return record


# ----------------------------------------------------------------------------- helpers


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
            session = Video(session_video)
            if before:
                pre = session.read(size, start_frame - before, start_frame, pixel_format="bgr24")
            post = session.read(size, start_frame + n, start_frame + n + after, pixel_format="bgr24")
            method = "session"
        except (av.error.FFmpegError, OSError, ValueError):
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


def _new_file(path: str, flags: int) -> int:
    # O_EXCL: a file (or link) already at the name is an error, never written through.
    return os.open(path, flags | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)


def _write_file(path: Path, write) -> None:
    """Create `path` (in a folder this run just made) and fill it; ClipError naming it on failure."""
    try:
        with open(path, "wb", opener=_new_file) as fh:
            write(fh)
    except OSError as e:
        if e.filename is None:  # a failed write() names no file: name it
            e.filename = str(path)
        raise ClipError(f"cannot write {describe_os_error(e)}") from None


def _write_jpegs(folder: Path, images, quality: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    for i, img in enumerate(images):
        path = folder / f"{i + 1:04d}.jpg"
        # Encode here and write with Python: cv2.imwrite only returns False, this says why.
        ok, buf = cv2.imencode(".jpg", img, params)
        if not ok:
            raise ClipError(f"cannot encode {path}")
        _write_file(path, lambda fh, buf=buf: fh.write(buf))


def inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether `path` lies strictly below `root`, judged on the normalised absolute paths."""
    r = os.path.normpath(os.path.abspath(root))
    q = os.path.normpath(os.path.abspath(path))
    return q != r and os.path.commonpath([r, q]) == r


def remove(path: Path, root: Path) -> None:
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


_remove = remove  # the name tests and older callers import


def outputs(out: Path, name: str, flow: str) -> list[Path]:
    """The final paths of a clip's files."""
    paths = [out / "images_rgb" / name, out / "gaze" / f"{name}.npy"]
    if flow != "none":
        paths.append(out / "images_flow" / name)
    return paths


def run_job(args: tuple) -> tuple[str, dict | None, str | None]:
    """`process_clip` in a worker: (name, record, None) or (name, None, why it failed)."""
    job, out_dir, flow, size, min_frames, quality, device = args
    try:
        return job.name, process_clip(job, out_dir, flow, size, min_frames, quality, device), None
    except ClipError as e:
        return job.name, None, str(e)
    except OSError as e:
        return job.name, None, describe_os_error(e)
    except Exception as e:  # a bug or an unexpected library error must not stop the others
        return job.name, None, f"{type(e).__name__}: {e}"
