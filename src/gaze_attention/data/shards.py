"""Scaling `prepare` out: shards of the clip list, a lock for shared files, a run-time estimate.

`prepare --shard I/N` (0 <= I < N) prepares the clips whose name hashes to I (CRC-32 of the
name, mod N): the N shards are disjoint and together hold every clip, whatever order the
machines list them in. Each shard records its clips in its own `manifest.shard-I-of-N.jsonl`
and its half-written clips under `.tmp/<clip>`, so N processes on N machines can write one
output folder (a SLURM array, or one shard per GPU); `egtea.read_manifests` merges the parts.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gaze_attention import fsio
from gaze_attention.data.egtea import MANIFEST


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard must be I/N with 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N`, e.g. `0/4` ... `3/4` (SLURM: `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`)."""
        try:
            i, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise ValueError(f"shard must be I/N (e.g. 0/4), got {text!r}") from None
        return cls(i, n)

    def owns(self, clip: str) -> bool:
        # CRC-32 of the name, not Python's hash(): the same on every machine and interpreter.
        return zlib.crc32(clip.encode("utf-8")) % self.count == self.index

    @property
    def manifest_name(self) -> str:
        return f"manifest.shard-{self.index}-of-{self.count}.jsonl"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def manifest_name(shard: Shard | None) -> str:
    return MANIFEST if shard is None else shard.manifest_name


@contextmanager
def folder_lock(folder: Path, name: str = ".prepare.lock") -> Iterator[None]:
    """An exclusive lock on `folder/name` (fcntl.flock; NFS maps it to POSIX locks), so that
    shards starting together check and write the shared settings one at a time."""
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent shards there
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a link planted at the lock's name is refused (ELOOP), never created through.
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically, never writing through a link: the one writer of
    prepare's files (`gaze_attention.fsio`; messages name `path`, not the temporary)."""
    fsio.write_bytes(path, data, parents=False)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a fresh temporary and rename (fsio): a reader never sees a half-written file and
    a link at `path` is replaced, never written through."""
    fsio.write_text(path, text, parents=False)


def atomic_copy(src: Path, dst: Path) -> None:
    fsio.write_bytes(dst, Path(src).read_bytes(), parents=False)


def _header_frames(job) -> int | None:
    """Frames of a job's video from its header (no decoding); None when unknown."""
    try:
        import av

        from gaze_attention.video import frame_rate

        with av.open(job.video) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            if stream.duration and stream.time_base:
                return int(float(stream.duration * stream.time_base) * frame_rate(stream))
    except Exception:  # an unreadable video fails later, with its reason, in the run itself
        return None
    return None


def count_frames(jobs: list, sample: int = 64) -> int:
    """Total frames of the jobs' clips; headers of at most `sample` videos are read, the rest
    extrapolated from their mean."""
    from gaze_attention.data.egtea import parse_clip_name

    known, unknown = [], []
    for j in jobs:
        if getattr(j, "source_frames", None) is not None:  # a segment of a long video knows its frames
            known.append(len(j.source_frames))
            continue
        try:  # an EGTEA name holds its frame range
            known.append(parse_clip_name(j.name).num_frames)
        except ValueError:
            unknown.append(j)
    step = max(1, len(unknown) // sample)
    probed = [n for j in unknown[::step][:sample] if (n := _header_frames(j)) is not None]
    mean = sum(probed) / len(probed) if probed else (sum(known) / len(known) if known else 0)
    return int(sum(known) + mean * len(unknown))


def probe_seconds_per_frame(
    video: str, size: tuple[int, int], flow: str, device: str = "auto", pairs: int = 3
) -> tuple[float, float]:
    """Seconds per frame of preparing `video`: (all work, flow alone).

    Decodes the clip at `size` (timed), encodes 3 JPEGs per frame, and times the flow of
    `pairs` frame pairs spread over the clip once warm (TV-L1's time depends on the motion:
    a clip's still first frames alone would promise too little), as one worker does.
    """
    import cv2

    from gaze_attention.data.flow import FlowComputer
    from gaze_attention.video import Video

    t0 = time.perf_counter()
    imgs = Video(video).read(size, 0, 300, pixel_format="bgr24")
    if len(imgs) < 2:
        raise ValueError(f"{video}: fewer than 2 frames")
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in imgs]
    for img, g in zip(imgs, grey, strict=True):
        cv2.imencode(".jpg", img)
        if flow != "none":
            cv2.imencode(".jpg", g)
            cv2.imencode(".jpg", g)
    other = (time.perf_counter() - t0) / len(imgs)
    if flow == "none":
        return other, 0.0
    fc = FlowComputer(flow, device=device)
    fc(grey[0], grey[1])  # warm-up: thread pools, CUDA context and kernels
    starts = sorted({round(k * (len(grey) - 2) / max(pairs - 1, 1)) for k in range(pairs)})
    t1 = time.perf_counter()
    if fc.device is not None:  # the PyTorch flow runs a clip's pairs as one batch
        import numpy as np

        fc._torch_pairs(np.stack([grey[s] for s in starts]), np.stack([grey[s + 1] for s in starts]))
        flow_s = (time.perf_counter() - t1) / len(starts)
    else:
        for s in starts:
            fc(grey[s], grey[s + 1])
        flow_s = (time.perf_counter() - t1) / len(starts)
    return other + flow_s, flow_s


def format_hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_message(
    jobs: list, size: tuple[int, int], flow: str, device: str, workers: int, shard: Shard | None
) -> str:
    """One line: clips, frames and the expected wall time of preparing `jobs` (rough)."""
    if not jobs:
        return "estimate: nothing to prepare"
    total = count_frames(jobs)
    where = f" (shard {shard})" if shard else ""
    for job in jobs[:5]:  # the first readable video is the probe
        try:
            per_frame, flow_s = probe_seconds_per_frame(job.video, size, flow, device)
            break
        except Exception:  # noqa: BLE001 - a broken video is reported by the run itself
            continue
    else:
        return f"estimate: {len(jobs)} clips, about {total:,} frames{where}; no video could be probed"
    procs = max(1, min(workers, os.cpu_count() or 1))
    seconds = per_frame * total / procs
    note = ""
    if flow == "tvl1-torch" and str(device) != "cpu":
        note = "; worker processes share the GPU, so more workers may not divide the time"
    return (
        f"estimate: {len(jobs)} clips, about {total:,} frames{where}; {per_frame * 1e3:.0f} ms per frame "
        f"(flow {flow_s * 1e3:.0f} ms) on {Path(job.video).name} -> about {format_hours(seconds)} "
        f"with {procs} process(es){note}"
    )


__all__ = [
    "Shard",
    "atomic_copy",
    "atomic_write_text",
    "count_frames",
    "estimate_message",
    "folder_lock",
    "manifest_name",
    "probe_seconds_per_frame",
    "write_atomic",
]
