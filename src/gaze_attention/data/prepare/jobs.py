"""Which clips a run prepares: job discovery for the EGTEA Gaze+ and own-recordings layouts.

Every annotation problem is found here, before anything is written or decoded. Gaze files
are read once each (in the worker pool when there is one) and each job gets its rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from gaze_attention.data.begaze import GazeFormatError, SessionGaze, read_begaze, read_gaze_csv
from gaze_attention.data.egtea import (
    AnnotationError,
    SplitEntry,
    build_vocabulary,
    check_split_lists,
    clip_name_problem,
    find_split_files,
    parse_clip_name,
    read_split_checked,
)
from gaze_attention.data.prepare.labels import (
    label_ids,
    label_vocabulary,
    read_classes,
    write_annotation_files,
)
from gaze_attention.data.prepare.options import VIDEO_EXTS, ClipJob, PrepareError, PrepareOptions
from gaze_attention.data.prepare.pool import LazyPool
from gaze_attention.data.prepare.segments import is_segments_layout, read_segment_labels, segment_jobs
from gaze_attention.data.shards import atomic_copy


def detect_layout(raw_dir: str | Path, options: PrepareOptions | None = None) -> str:
    """'segments' (segments.csv + videos/ or --videos, or --segments), 'own' (videos/ +
    labels.csv) or 'egtea' (cropped_clips/ + split lists)."""
    raw = Path(raw_dir)
    if is_segments_layout(raw, options):
        return "segments"
    if options is not None and (options.videos or options.gaze or options.calibration):
        raise PrepareError(
            f"{raw}: --videos, --gaze and --calibration are for long recordings with a segments file "
            f"({raw / 'segments.csv'} or --segments); there is none"
        )
    if (raw / "labels.csv").is_file() and (raw / "videos").is_dir():
        return "own"
    if (raw / "cropped_clips").is_dir():
        return "egtea"
    raise PrepareError(
        f"{raw}: neither an EGTEA Gaze+ folder (cropped_clips/, gaze_data/, action_annotation/), "
        "an own-recordings folder (videos/, gaze/, labels.csv) nor long recordings with segments "
        "(videos/, gaze/, segments.csv)"
    )


def by_stem(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """Files of a folder by lower-case stem (EGTEA mixes 'R03' and 'r03' in session names)."""
    if not folder.is_dir():
        return {}
    return {p.stem.lower(): p for p in folder.iterdir() if p.suffix.lower() in exts}


def annotation_dir(raw: Path, annotations: str | Path | None) -> Path:
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


def egtea_jobs(
    raw: Path, ann_dir: Path, splits: list[int] | None, warn: Callable[[str], None]
) -> tuple[list[ClipJob], dict[int, dict[str, list[SplitEntry]]]]:
    lists = read_split_lists(ann_dir, splits)
    session_videos = by_stem(raw / "videos", VIDEO_EXTS)
    session_videos.update(by_stem(raw / "raw_videos", VIDEO_EXTS))
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


def read_labels(raw: Path) -> tuple[list[dict[str, str]], list[str]]:
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
    classes, unknown = read_classes(raw, [(f"{path}:{r['_line']}", r["label"]) for r in rows])
    problems += unknown
    if problems:
        raise _problems_error(problems)
    return rows, classes


def own_jobs(raw: Path, ann_out: Path | None) -> tuple[list[ClipJob], dict]:
    """Jobs for own recordings; writes the EGTEA-style annotation files to `ann_out`."""
    rows, classes = read_labels(raw)
    cid = {c: i for i, c in enumerate(classes)}
    verbs, nouns = label_vocabulary(rows, classes)
    vid, nid = {v: i for i, v in enumerate(verbs)}, {n: i for i, n in enumerate(nouns)}
    videos = {p.stem: p for p in (raw / "videos").iterdir() if p.suffix.lower() in VIDEO_EXTS}
    jobs, lines = [], {"train": [], "test": []}
    for r in rows:
        name = r["clip"]
        a, v, n = label_ids(r, cid, vid, nid)
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
        write_annotation_files(ann_out, classes, verbs, nouns, lines)
    return jobs, lines


def attach_gaze(
    jobs: list[ClipJob],
    gaze_files: dict[str, Path],
    reader: Callable[[Path], SessionGaze],
    key: Callable[[ClipJob], str | None],
    margin: int,
    pool: LazyPool,
    allow_missing: bool,
    warn: Callable[[str], None],
) -> None:
    """Read each needed gaze file once (in parallel) and give each job its rows."""
    needed = sorted({k for j in jobs if (k := key(j)) is not None and k.lower() in gaze_files})
    sessions: dict[str, SessionGaze | str] = {}
    paths = [gaze_files[k.lower()] for k in needed]
    if pool.workers > 1 and len(paths) > 1:
        results = list(pool.get().map(read_gaze_safe, [(reader, p) for p in paths]))
    else:
        results = [read_gaze_safe((reader, p)) for p in paths]
    for k, res in zip(needed, results, strict=True):
        sessions[k] = res
        if isinstance(res, SessionGaze) and res.malformed:
            warn(res.report())
    for j in jobs:
        k = key(j)
        res = sessions.get(k) if k is not None else None
        if res is None:
            where = f"no gaze file for {k or j.name}"
            j.gaze_missing = True
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


def read_gaze_safe(args: tuple) -> SessionGaze | str:
    reader, path = args
    try:
        return reader(path)
    except (GazeFormatError, OSError, UnicodeDecodeError) as e:
        return str(e) if str(path) in str(e) else f"{path}: {e}"


def copy_annotations(ann_dir: Path, dst: Path, splits: list[int]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for fname in ("action_idx.txt", "verb_idx.txt", "noun_idx.txt"):
        if (ann_dir / fname).is_file():
            atomic_copy(ann_dir / fname, dst / fname)
    for n, files in find_split_files(ann_dir).items():
        if n in splits:
            for p in files.values():
                atomic_copy(p, dst / p.name)




def check_annotations(
    raw: Path, layout: str, splits: list[int] | None, annotations: str | Path | None,
    options: PrepareOptions | None = None,
) -> None:  # fmt: skip
    """Every annotation problem, reported before anything is written or decoded."""
    if layout == "segments":
        if splits not in (None, [1]):
            raise PrepareError("a segments file has a single split (1); drop --splits")
        read_segment_labels(raw, options or PrepareOptions())
    elif layout == "egtea":
        read_split_lists(annotation_dir(raw, annotations), splits)
    else:
        read_labels(raw)


def find_jobs(
    raw: Path,
    out: Path,
    layout: str,
    splits: list[int] | None,
    annotations: str | Path | None,
    min_frames: int,
    allow_missing_gaze: bool,
    pool: LazyPool,
    warn: Callable[[str], None],
    options: PrepareOptions | None = None,
    info: Callable[[str], None] | None = None,
) -> list[ClipJob]:
    """The run's jobs, in split-list order, with their gaze; writes OUT/annotations/."""
    margin = max(min_frames, 1)
    if layout == "segments":
        return segment_jobs(raw, out / "annotations", options or PrepareOptions(), warn, info or warn)
    if layout == "egtea":
        ann_dir = annotation_dir(raw, annotations)
        jobs, lists = egtea_jobs(raw, ann_dir, splits, warn)
        copy_annotations(ann_dir, out / "annotations", sorted(lists))
        entries = [e for parts in lists.values() for es in parts.values() for e in es]
        build_vocabulary(out / "annotations", entries)  # fail now on a malformed index file
        gaze_files, reader, key = by_stem(raw / "gaze_data", (".txt",)), read_begaze, lambda j: j.session
    else:
        if splits not in (None, [1]):
            raise PrepareError("own recordings have a single split (1); drop --splits")
        jobs, _ = own_jobs(raw, out / "annotations")
        gaze_files, reader, key = by_stem(raw / "gaze", (".csv",)), read_gaze_csv, lambda j: j.name
    attach_gaze(jobs, gaze_files, reader, key, margin, pool, allow_missing_gaze, warn)
    return jobs
