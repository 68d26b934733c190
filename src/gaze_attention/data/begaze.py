"""Gaze readers: SMI BeGaze text exports (EGTEA Gaze+ `gaze_data/<session>.txt`) and own CSVs.

A file has `##` comment lines, a column-name line starting with `Time`, then one sample per
row, whitespace-separated. Two layouts exist:

- 7 columns: x = col 3, y = col 4, integer session frame = col 5, event = col 6;
- 26 columns: x = col 5, y = col 6, frame as `hh:mm:ss:ff` (24 fps) = col -2, event = col -1.

Coordinates are pixels of a 1280x960 scene frame. The reader turns the samples into one row per
session frame (normalised x, y, event code), averaging the samples that fall on the same frame.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaze_attention.errors import GazeAttentionError

# Event codes stored in per-frame gaze arrays (column 2 of the prepared `gaze/<clip>.npy`).
NONE, FIXATION, SACCADE, BLINK, TRUNCATED = 0, 1, 2, 3, 4
EVENT_NAMES = ("none", "fixation", "saccade", "blink", "truncated")
_EVENT_OF_TOKEN = {"fixation": FIXATION, "saccade": SACCADE, "blink": BLINK, "-": NONE}

FRAME_SIZE = (1280, 960)  # (width, height) of the coordinates in EGTEA's BeGaze files
FPS = 24
_TIMECODE = re.compile(r"^(\d+):(\d+):(\d+):(\d+)$")
_MAX_FRAME = 24 * 3600 * 24  # a day of video: larger frame numbers are corrupt rows
_MAX_REPORTED = 20


class GazeFormatError(GazeAttentionError, ValueError):
    """A gaze file that cannot be used at all (no header, or no parsable row)."""


@dataclass
class SessionGaze:
    """Per-frame gaze of one recording.

    `points` [F, 2] holds x, y normalised to [0, 1] of the frame (nan where no usable sample);
    `events` [F] int8 holds NONE/FIXATION/SACCADE/BLINK, or TRUNCATED where the averaged point
    fell outside the frame (its coordinates are then clipped to the border).
    """

    path: Path
    points: np.ndarray  # [F, 2] float32
    events: np.ndarray  # [F] int8
    num_samples: int = 0
    declared_samples: int | None = None
    malformed: int = 0
    malformed_lines: list[tuple[int, str]] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.events)

    def as_array(self) -> np.ndarray:
        """[F, 3] float32: x, y, event code (the prepared per-clip layout)."""
        return np.concatenate([self.points, self.events[:, None].astype(np.float32)], axis=1)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """[stop - start, 3] rows for session frames start..stop-1; nan/0 outside the recording."""
        out = np.full((stop - start, 3), np.nan, dtype=np.float32)
        out[:, 2] = NONE
        lo, hi = max(start, 0), min(stop, self.num_frames)
        if hi > lo:
            out[lo - start : hi - start] = self.as_array()[lo:hi]
        return out

    def report(self) -> str:
        """Human-readable note on the malformed rows, '' when there were none."""
        if not self.malformed:
            return ""
        shown = "; ".join(f"{self.path}:{n}: {why}" for n, why in self.malformed_lines)
        more = self.malformed - len(self.malformed_lines)
        tail = f" (and {more} more)" if more > 0 else ""
        return f"{self.path}: {self.malformed} malformed row(s) skipped: {shown}{tail}"


def timecode_to_frame(code: str, fps: int = FPS) -> int:
    """`hh:mm:ss:ff` -> frame number at `fps`."""
    m = _TIMECODE.match(code)
    if m is None:
        raise ValueError(f"not a hh:mm:ss:ff timecode: {code!r}")
    h, mi, s, f = (int(g) for g in m.groups())
    if mi >= 60 or s >= 60 or f >= fps:
        raise ValueError(f"timecode out of range: {code!r}")
    return (h * 3600 + mi * 60 + s) * fps + f


def _parse_row(tokens: list[str]) -> tuple[int, float, float, int]:
    """One data row -> (frame, x_px, y_px, event); raises ValueError with the reason."""
    if len(tokens) == 7:
        x, y, frame_tok, event_tok = tokens[3], tokens[4], tokens[5], tokens[6]
        try:
            frame = int(frame_tok)
        except ValueError:
            raise ValueError(f"frame {frame_tok!r} is not an integer") from None
    elif len(tokens) == 26:
        x, y, frame_tok, event_tok = tokens[5], tokens[6], tokens[-2], tokens[-1]
        frame = timecode_to_frame(frame_tok)
    else:
        raise ValueError(f"{len(tokens)} columns, expected 7 or 26")
    event = _EVENT_OF_TOKEN.get(event_tok.lower())
    if event is None:
        raise ValueError(f"unknown event {event_tok!r}")
    if not 0 <= frame <= _MAX_FRAME:
        raise ValueError(f"frame {frame} out of range")
    try:
        px, py = float(x), float(y)
    except ValueError:
        raise ValueError(f"coordinates {x!r}, {y!r} are not numbers") from None
    if not (math.isfinite(px) and math.isfinite(py)):
        raise ValueError(f"coordinates {x!r}, {y!r} are not finite")
    return frame, px, py, event


def aggregate_samples(
    frames: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    events: np.ndarray,
    num_frames: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples (normalised coordinates) -> per-frame points [F, 2] and events [F].

    A frame's event is the most common event among its samples (ties: fixation, saccade, blink,
    none). Its point is the mean of the samples carrying that event with finite coordinates;
    blinks carry no point. A mean outside [0, 1] is clipped and its event set to TRUNCATED.
    """
    frames = np.asarray(frames, dtype=np.int64)
    events = np.asarray(events, dtype=np.int64)
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    n = int(frames.max()) + 1 if len(frames) else 0
    if num_frames is not None:
        keep = frames < num_frames
        frames, events, xs, ys = frames[keep], events[keep], xs[keep], ys[keep]
        n = num_frames
    counts = np.zeros((n, 4), dtype=np.int64)
    np.add.at(counts, (frames, events), 1)
    # Ties broken by priority: scale counts so a lower-priority event never wins a tie.
    priority = np.array([0, 3, 2, 1])  # none, fixation, saccade, blink
    has = counts.sum(1) > 0
    frame_event = np.where(has, np.argmax(counts * 4 + priority, axis=1), NONE)

    use = (events == frame_event[frames]) & (events != BLINK) & np.isfinite(xs) & np.isfinite(ys)
    sums = np.zeros((n, 2))
    cnt = np.zeros(n)
    np.add.at(sums, frames[use], np.stack([xs[use], ys[use]], 1))
    np.add.at(cnt, frames[use], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        points = sums / cnt[:, None]  # nan where no usable sample
    outside = np.any((points < 0) | (points > 1), axis=1)
    points = np.clip(points, 0.0, 1.0)
    frame_event = np.where(outside, TRUNCATED, frame_event)
    return points.astype(np.float32), frame_event.astype(np.int8)


def _decode_text(raw: bytes) -> str:
    """Text of a BeGaze export: UTF-16 (with a byte-order mark, or detected by its zero bytes),
    UTF-8 with or without a BOM, else Latin-1 (every byte decodes: a stray byte never fails)."""
    import codecs

    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", errors="replace")
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    head = raw[:4096]
    if len(head) >= 4 and head.count(0) > len(head) // 4:  # ASCII text as UTF-16 without a BOM
        even_zeros, odd_zeros = head[0::2].count(0), head[1::2].count(0)
        return raw.decode("utf-16-le" if odd_zeros > even_zeros else "utf-16-be", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass
class RawSamples:
    """The samples of one gaze file before they are merged per frame (normalised x, y)."""

    path: Path
    frames: np.ndarray  # [N] int64 frame of each sample
    xs: np.ndarray  # [N] float64
    ys: np.ndarray  # [N] float64
    events: np.ndarray  # [N] int64 NONE/FIXATION/SACCADE/BLINK
    declared_samples: int | None = None
    malformed: int = 0
    malformed_lines: list[tuple[int, str]] = field(default_factory=list)

    def to_session(self) -> SessionGaze:
        points, events = aggregate_samples(self.frames, self.xs, self.ys, self.events)
        return SessionGaze(
            self.path, points, events, len(self.frames), self.declared_samples,
            self.malformed, self.malformed_lines,
        )  # fmt: skip


def read_begaze(
    path: str | Path,
    frame_size: tuple[int, int] = FRAME_SIZE,
    max_reported: int = _MAX_REPORTED,
) -> SessionGaze:
    """Read one BeGaze export into per-session-frame gaze (see `SessionGaze`).

    Malformed rows are skipped, counted and listed (file and line number) in
    `SessionGaze.report()`. Raises `GazeFormatError` naming the file when it has no `Time`
    header line or no parsable row.
    """
    return read_begaze_samples(path, frame_size, max_reported).to_session()


def read_begaze_samples(
    path: str | Path,
    frame_size: tuple[int, int] = FRAME_SIZE,
    max_reported: int = _MAX_REPORTED,
) -> RawSamples:
    """The samples of a BeGaze export, not yet merged per frame (see `read_begaze`)."""
    path = Path(path)
    width, height = frame_size
    lines = _decode_text(path.read_bytes()).replace("\r\n", "\n").replace("\r", "\n").split("\n")

    declared = None
    header = None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("##"):
            if "Number of Samples" in s:
                tail = s.split(":", 1)[-1].split()
                if tail and tail[0].isdigit():
                    declared = int(tail[0])
            continue
        if s.split()[:1] == ["Time"]:
            header = i
            break
    if header is None:
        raise GazeFormatError(f"{path}: no column-name line starting with 'Time' found")

    fr, xs, ys, ev = [], [], [], []
    malformed = 0
    reported: list[tuple[int, str]] = []
    for lineno, line in enumerate(lines[header + 1 :], start=header + 2):
        tokens = line.split()
        if not tokens or tokens[0].startswith("##"):
            continue
        if len(tokens) > 1 and tokens[1] == "MSG":  # recorder messages, not samples
            continue
        try:
            frame, px, py, event = _parse_row(tokens)
        except ValueError as e:
            malformed += 1
            if len(reported) < max_reported:
                reported.append((lineno, str(e)))
            continue
        fr.append(frame)
        xs.append(px / width)
        ys.append(py / height)
        ev.append(event)
    if not fr:
        raise GazeFormatError(
            f"{path}: no parsable gaze rows"
            + (
                f" ({malformed} malformed, first at line {reported[0][0]}: {reported[0][1]})"
                if reported
                else ""
            )
        )
    return RawSamples(
        path, np.array(fr, dtype=np.int64), np.array(xs, dtype=np.float64),
        np.array(ys, dtype=np.float64), np.array(ev, dtype=np.int64), declared, malformed, reported,
    )  # fmt: skip


_CSV_EVENTS = {
    "fixation": FIXATION, "saccade": SACCADE, "blink": BLINK, "none": NONE, "-": NONE, "": FIXATION,
    "0": NONE, "1": FIXATION, "2": SACCADE, "3": BLINK,
}  # fmt: skip


def read_gaze_csv(path: str | Path, max_reported: int = _MAX_REPORTED) -> SessionGaze:
    """Read own-recording gaze: CSV rows `frame,x,y[,type]`, one clip per file.

    frame: 0-based frame of the clip; x, y: normalised to [0, 1] of the video frame (values
    outside are points off the frame, marked TRUNCATED); type: fixation | saccade | blink | none
    (or 1 | 2 | 3 | 0), fixation when absent. A first line that is not numeric is a header.
    Several rows of one frame are averaged as in `read_begaze`.
    """
    return read_gaze_csv_samples(path, max_reported).to_session()


def read_gaze_csv_samples(path: str | Path, max_reported: int = _MAX_REPORTED) -> RawSamples:
    """The rows of an own-recording gaze CSV, not yet merged per frame (see `read_gaze_csv`)."""
    path = Path(path)
    fr, xs, ys, ev = [], [], [], []
    malformed = 0
    reported: list[tuple[int, str]] = []
    first = True
    with open(path, encoding="utf-8-sig", newline=None) as fh:
        for lineno, line in enumerate(fh, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            header_allowed, first = first, False
            parts = [p.strip() for p in s.split(",")]
            try:
                if len(parts) not in (3, 4):
                    raise ValueError(f"{len(parts)} fields, expected frame,x,y[,type]")
                try:
                    frame = int(parts[0])
                except ValueError:
                    if header_allowed:
                        continue  # header line
                    raise ValueError(f"frame {parts[0]!r} is not an integer") from None
                if not 0 <= frame <= _MAX_FRAME:
                    raise ValueError(f"frame {frame} out of range")
                x, y = float(parts[1]), float(parts[2])
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise ValueError(f"coordinates {parts[1]!r}, {parts[2]!r} are not finite")
                event = _CSV_EVENTS.get(parts[3].lower() if len(parts) == 4 else "")
                if event is None:
                    raise ValueError(f"unknown gaze type {parts[3]!r}")
            except ValueError as e:
                malformed += 1
                if len(reported) < max_reported:
                    reported.append((lineno, str(e)))
                continue
            fr.append(frame)
            xs.append(x)
            ys.append(y)
            ev.append(event)
    if not fr:
        raise GazeFormatError(f"{path}: no parsable gaze rows (expected frame,x,y[,type])")
    return RawSamples(
        path, np.array(fr, dtype=np.int64), np.array(xs, dtype=np.float64),
        np.array(ys, dtype=np.float64), np.array(ev, dtype=np.int64), None, malformed, reported,
    )  # fmt: skip
