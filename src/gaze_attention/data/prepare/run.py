"""A whole `prepare` run: check the inputs, lock OUT, find the jobs, run them, write the manifest."""

from __future__ import annotations

import sys
import time
from concurrent.futures import as_completed
from pathlib import Path
from typing import IO

from gaze_attention import fsio
from gaze_attention.data.prepare.clip import remove, run_job
from gaze_attention.data.prepare.jobs import check_annotations, detect_layout, find_jobs
from gaze_attention.data.prepare.manifest import (
    OutputLock,
    check_settings,
    load_done,
    open_for_append,
    unlink_planted_links,
    write_manifest,
)
from gaze_attention.data.prepare.options import ClipJob, PrepareError, PrepareOptions, PrepareResult
from gaze_attention.data.prepare.pool import LazyPool
from gaze_attention.data.shards import Shard, estimate_message, manifest_name
from gaze_attention.errors import describe_os_error


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
    options: PrepareOptions | None = None,
) -> PrepareResult:
    """Prepare a raw data set (EGTEA layout, own recordings, or long recordings with a segments
    file: see `gaze_attention.data.prepare.segments`) into `out_dir`.

    splits: split numbers to prepare (default: all present). flow: one of tvl1 (the paper's),
    dis, farneback, none. size: (width, height) of the stored frames. min_frames: shorter clips
    are extended (session frames around the clip when `videos/<session>.mp4` exists, else the
    edge frames repeated). annotations: folder of split lists to use instead of the raw one.
    Finished clips of an earlier run (in `manifest.jsonl`) are skipped. With workers > 1 the
    worker processes are spawned, so scripts must call this under `if __name__ == "__main__":`;
    0 and 1 both mean the main process. shard: `Shard` or "I/N": prepare only that shard's
    clips, recorded in its own manifest part (see `gaze_attention.data.shards`). flow_device:
    where `tvl1-torch` runs. estimate: print the expected run time (from a probe of the first
    clip) to stderr before starting. options: all of these as one `PrepareOptions` (then the
    keyword arguments are not used); the segments layout's settings (files, gaze offset,
    confidence, I-VT thresholds) exist only there.

    OUT is locked for the run: a second run into it (or of the same shard) is refused at once
    with a PrepareError naming the holder's pid and host. A file that cannot be written (the
    disk is full) stops the run; the result's `stopped` names it and `summary()` tells it.
    """
    if options is None:
        options = PrepareOptions(
            splits=None if splits is None else tuple(splits), flow=flow, size=tuple(size), workers=workers,
            min_frames=min_frames, jpeg_quality=jpeg_quality, annotations=annotations,
            allow_missing_gaze=allow_missing_gaze, progress=progress, shard=shard, flow_device=flow_device,
            estimate=estimate,
        )  # fmt: skip
    return run(Path(raw_dir), Path(out_dir), options)


def run(raw: Path, out: Path, opts: PrepareOptions) -> PrepareResult:
    """The run, step by step (see `prepare`)."""
    t0 = time.perf_counter()
    if not raw.is_dir():
        raise PrepareError(f"{raw}: no such folder")
    layout = detect_layout(raw, opts)
    check_annotations(raw, layout, opts.split_list, opts.annotations, opts)
    settings = {**opts.settings, **opts.gaze_settings} if layout == "segments" else opts.settings
    result = PrepareResult(out_dir=out)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out, opts.shard):
        unlink_planted_links(out, opts.shard, result.warnings.append)
        check_settings(out, settings, opts.shard is not None)
        pool = LazyPool(opts.workers)  # one set of worker processes for gaze files and clips
        try:
            jobs = find_jobs(raw, out, layout, opts.split_list, opts.annotations, opts.min_frames,
                             opts.allow_missing_gaze, pool, result.warnings.append, opts,
                             result.info.append)  # fmt: skip
            jobs = _select(jobs, opts.shard)
            todo, records = _plan(out, jobs, opts, result)
            if opts.estimate:
                print(estimate_message(todo, opts.size, opts.flow, opts.flow_device, pool.workers, opts.shard),
                      file=sys.stderr)  # fmt: skip
            _run_jobs(out, todo, records, opts, pool, result)
        finally:
            pool.close()
        _finish(out, jobs, records, opts, result)
    result.seconds = time.perf_counter() - t0
    return result


# ----------------------------------------------------------------------------- the steps


def _select(jobs: list[ClipJob], shard: Shard | None) -> list[ClipJob]:
    return jobs if shard is None else [j for j in jobs if shard.owns(j.name)]


def _plan(
    out: Path, jobs: list[ClipJob], opts: PrepareOptions, result: PrepareResult
) -> tuple[list[ClipJob], dict[str, dict]]:
    """The jobs still to do, and the records of the clips already done (kept)."""
    for d in ("images_rgb", "gaze") + (("images_flow",) if opts.flow != "none" else ()):
        (out / d).mkdir(exist_ok=True)
    _clear_tmp(out, jobs, opts.shard)  # half-written clips of a killed run
    done = load_done(out, opts.flow)
    if opts.shard is not None:  # a shard's manifest part keeps its own clips only
        names = {j.name for j in jobs}
        done = {k: v for k, v in done.items() if k in names}
    result.skipped = [j.name for j in jobs if j.name in done]
    for j in jobs:
        if j.name in done:  # a clip prepared for one split may now be wanted by another
            done[j.name]["splits"] = sorted(set(done[j.name].get("splits", [])) | set(j.splits))
    return [j for j in jobs if j.name not in done], dict(done)


def _run_jobs(
    out: Path, todo: list[ClipJob], records: dict[str, dict], opts: PrepareOptions, pool: LazyPool,
    result: PrepareResult,
) -> None:  # fmt: skip
    """Prepare each clip, appending its record to the manifest as it completes."""
    path = out / manifest_name(opts.shard)
    args = [(j, str(out), opts.flow, opts.size, opts.min_frames, opts.jpeg_quality, opts.flow_device) for j in todo]
    bar = _progress(len(todo), opts.progress)
    manifest: IO[str] | None = None
    try:
        manifest = open_for_append(path)
        if pool.workers > 1 and len(todo) > 1:
            done = (f.result() for f in as_completed([pool.get().submit(run_job, a) for a in args]))
        else:
            done = (run_job(a) for a in args)
        for res in done:
            _collect(res, records, result, manifest, bar)
    except OSError as e:  # e.g. the disk is full: stop, keep what is recorded, still summarise
        if e.filename is None:
            e.filename = str(path)
        result.stopped = f"cannot write {describe_os_error(e)}"
    finally:
        bar.close()
        if manifest is not None:
            try:
                manifest.close()
            except OSError as e:
                result.stopped = result.stopped or f"cannot write {path}: {describe_os_error(e)}"


def _collect(res: tuple, records: dict[str, dict], result: PrepareResult, manifest: IO[str], bar) -> None:
    name, rec, err = res
    if rec is not None:
        notes = rec.pop("notes", [])
        result.warnings += [f"{name}: {n}" for n in notes if not n.startswith("aspect: ")]
        result.stretched += [(name, n[len("aspect: "):]) for n in notes if n.startswith("aspect: ")]
        if rec["gaze"] != "missing" and rec["gaze_coverage"] == 0:
            result.warnings.append(
                f"{name}: its gaze file gives no usable sample on the clip's frames (coverage 0: "
                "non-finite coordinates, or a recording that does not cover the clip)"
            )
        manifest.write(fsio.dumps_json(rec, indent=None) + "\n")
        manifest.flush()
        records[name] = rec
        result.prepared.append(name)
    else:
        result.failed.append((name, err or "unknown error"))
        bar.set_postfix(failed=len(result.failed))
    bar.update(1)


def _aspect_warning(stretched: list[tuple[str, str]], size: tuple[int, int]) -> str:
    clip, source = stretched[0]
    w, h = (int(v) for v in source.split("x"))
    keep = f"{2 * round(size[1] * w / h / 2)}x{size[1]}"
    return (
        f"{len(stretched)} clip(s) change aspect ratio when resized to {size[0]}x{size[1]} (e.g. {clip}: "
        f"{source} video); frames are stretched, not cropped. --size {keep} keeps that aspect"
    )


def _finish(out: Path, jobs: list[ClipJob], records: dict[str, dict], opts: PrepareOptions,
            result: PrepareResult) -> None:  # fmt: skip
    """The manifest rewritten in split-list order (only clips on disk), `.tmp/` cleared, the notes."""
    if result.stretched:
        result.warnings.append(_aspect_warning(result.stretched, opts.size))
    order = {j.name: i for i, j in enumerate(jobs)}
    ordered = sorted(records.values(), key=lambda r: order.get(r["clip"], 1 << 30))
    try:
        write_manifest(out, ordered, opts.flow, manifest_name(opts.shard))
        _clear_tmp(out, jobs, opts.shard)
    except OSError as e:
        result.stopped = result.stopped or f"cannot write {describe_os_error(e)}"


def _clear_tmp(out: Path, jobs: list[ClipJob], shard: Shard | None) -> None:
    """Half-written clips: all of `.tmp/` for a whole run, a shard's own clips only when
    other shards may be writing theirs there right now."""
    if shard is None:
        remove(out / ".tmp", out)
        return
    for j in jobs:
        remove(out / ".tmp" / j.name, out)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="clip", desc="prepare", disable=not enabled, file=sys.stderr)
