"""A synthetic, gaze-dependent data set in the raw EGTEA Gaze+ layout.

Each clip shows several moving objects over a textured, slightly shaking background. One object
is handled: a skin-coloured hand and arm hold it and move it with the class's motion pattern.
The others (distractors, of the same kinds) move with other patterns and no hand. The label is
(motion pattern = verb, kind of the handled object = noun), so the task is solvable from video
alone (find the hand), while gaze, which mostly fixates the handled object, says where to look.
Gaze is noisy: fixations on distractors and empty places, saccades, blinks, tracking loss,
measurement noise, points leaving the frame.

Written layout (what `gaze-attention prepare` reads):
```
cropped_clips/<session>/<clip>.mp4       EGTEA-style names, 24 fps
gaze_data/<session>.txt                  BeGaze exports, 7- and 26-column layouts alternating
action_annotation/{action,verb,noun}_idx.txt, train_split1.txt, test_split1.txt
videos/<session>.mp4                     full session videos (only with session_videos=True)
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from gaze_attention.data.begaze import FRAME_SIZE
from gaze_attention.data.egtea import FPS

VERBS = ("lift", "lower", "push", "pull", "shake", "circle")
# noun: (shape, RGB colour)
NOUNS = (
    ("ball", "circle", (220, 40, 40)),
    ("box", "square", (40, 190, 60)),
    ("cone", "triangle", (50, 80, 230)),
    ("gem", "diamond", (235, 210, 30)),
    ("ring", "ring", (200, 50, 200)),
    ("bar", "bar", (30, 200, 210)),
)
RECIPES = ("PastaSalad", "Pizza", "GreekSalad", "Cheeseburger", "BaconAndEggs", "TurkeySandwich")
GAZE_HZ = 30  # SMI eye-tracking glasses: 30 Hz against 24 fps video, so 1-2 samples per frame
SKIN = (205, 160, 130)

_HEADER_7 = ("Time", "Type", "Trial", "L POR X [px]", "L POR Y [px]", "Frame", "L Event Info")
_HEADER_26 = (
    "Time", "Type", "Trial", "L Dia X [px]", "L Dia Y [px]", "L POR X [px]", "L POR Y [px]",
    "R Dia X [px]", "R Dia Y [px]", "R POR X [px]", "R POR Y [px]", "Timing",
    "Pupil Confidence", "L Plane", "R Plane", "L EPOS X", "L EPOS Y", "L EPOS Z", "R EPOS X",
    "R EPOS Y", "R EPOS Z", "L GVEC X", "L GVEC Y", "L GVEC Z", "Frame", "L Event Info",
)  # fmt: skip
_EVENT_TOKEN = {0: "-", 1: "Fixation", 2: "Saccade", 3: "Blink"}


def class_pairs(num_classes: int) -> list[tuple[int, int]]:
    """(verb, noun) of each class: a near-square grid of verbs x nouns, verb varying fastest."""
    if not 2 <= num_classes <= len(VERBS) * len(NOUNS):
        raise ValueError(f"num_classes must be in 2..{len(VERBS) * len(NOUNS)}")
    n_verbs = min(len(VERBS), math.ceil(math.sqrt(num_classes)))
    n_nouns = math.ceil(num_classes / n_verbs)
    if n_nouns > len(NOUNS):
        n_verbs = len(VERBS)
        n_nouns = math.ceil(num_classes / n_verbs)
    pairs = [(v, n) for n in range(n_nouns) for v in range(n_verbs)]
    return pairs[:num_classes]


def _trajectory(verb: int, u: np.ndarray, start: np.ndarray, amp: float) -> np.ndarray:
    """Centre [L, 2] (normalised) of an object moved with pattern `verb` over time u in [0, 1]."""
    x0, y0 = start
    name = VERBS[verb]
    if name == "lift":
        x, y = x0 + 0 * u, y0 - amp * u
    elif name == "lower":
        x, y = x0 + 0 * u, y0 + amp * u
    elif name == "push":
        x, y = x0 + amp * u, y0 + 0 * u
    elif name == "pull":
        x, y = x0 - amp * u, y0 + 0 * u
    elif name == "shake":
        x, y = x0 + 0.3 * amp * np.sin(2 * np.pi * 2 * u), y0 + 0 * u
    else:  # circle
        r = 0.35 * amp
        x, y = x0 + r * np.cos(2 * np.pi * u), y0 + r * np.sin(2 * np.pi * u)
    return np.stack([x, y], axis=1)


def _start_for(verb: int, amp: float, rng: np.random.Generator) -> np.ndarray:
    """A start point that keeps the whole path inside the frame (margin 0.12)."""
    m = 0.12
    lo, hi = np.array([m, m]), np.array([1 - m, 1 - m])
    name = VERBS[verb]
    if name == "lift":
        lo[1] += amp
    elif name == "lower":
        hi[1] -= amp
    elif name == "push":
        hi[0] -= amp
    elif name == "pull":
        lo[0] += amp
    elif name == "shake":
        lo[0] += 0.3 * amp
        hi[0] -= 0.3 * amp
    else:
        lo += 0.35 * amp
        hi -= 0.35 * amp
    return rng.uniform(lo, hi)


def _draw_object(img: np.ndarray, shape: str, colour, cx: float, cy: float, r: float) -> None:
    c = (int(round(cx)), int(round(cy)))
    ri = max(2, int(round(r)))
    if shape == "circle":
        cv2.circle(img, c, ri, colour, -1, cv2.LINE_AA)
    elif shape == "ring":
        cv2.circle(img, c, ri, colour, max(2, ri // 3), cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(img, (c[0] - ri, c[1] - ri), (c[0] + ri, c[1] + ri), colour, -1)
    elif shape == "bar":
        cv2.rectangle(img, (c[0] - ri, c[1] - ri // 3), (c[0] + ri, c[1] + ri // 3), colour, -1)
    else:
        if shape == "triangle":
            pts = [(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)]
        else:  # diamond
            pts = [(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)]
        poly = np.round(np.array(pts)).astype(np.int32)
        cv2.fillPoly(img, [poly], colour, cv2.LINE_AA)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth random colour field with fine texture, uint8 [h, w, 3]."""
    base = rng.uniform(60, 170, size=(4, 5, 3)).astype(np.float32)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 6, size=(h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_clip(
    rng: np.random.Generator,
    verb: int,
    noun: int,
    nouns_in_use: int,
    verbs_in_use: int,
    length: int,
    size: tuple[int, int],
    distractors: int = 2,
    p_look_handled: float = 0.75,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one clip and where its viewer means to look.

    Returns frames uint8 [L, H, W, 3]; intended gaze [L, 2] (normalised, before measurement
    noise); onset bool [L], True where a new fixation starts; on_handled bool [L].
    """
    w, h = size
    jitter = max(2, round(0.04 * min(w, h)))  # camera shake, px
    bg = _background(rng, w + 2 * jitter, h + 2 * jitter)
    u = np.linspace(0.0, 1.0, length)
    phase = rng.uniform(0, 0.15)
    u = np.clip((u - phase) / (1 - phase), 0, 1)  # the motion may start a little late

    amp = rng.uniform(0.25, 0.4)
    objects = [(verb, noun, _trajectory(verb, u, _start_for(verb, amp, rng), amp))]
    for _ in range(distractors):
        dv = int(rng.integers(verbs_in_use))
        dn = int(rng.integers(nouns_in_use))
        damp = rng.uniform(0.15, 0.35)
        objects.append((dv, dn, _trajectory(dv, u, _start_for(dv, damp, rng), damp)))
    order = rng.permutation(len(objects))  # depth order, so the handled one is not always on top

    # Camera shake: a smooth random walk of the background offset.
    steps = rng.normal(0, 0.6, size=(length, 2)).cumsum(0)
    offs = np.clip(np.rint(steps), -jitter, jitter).astype(int) + jitter  # [L, 2]

    r = 0.075 * min(w, h) * rng.uniform(0.9, 1.2)
    arm_dx = rng.uniform(-0.25, 0.25) * w
    skin = np.clip(np.array(SKIN) + rng.normal(0, 12, 3), 0, 255)
    skin_c = tuple(int(c) for c in skin)
    arm_c = tuple(int(c * 0.85) for c in skin)

    frames = np.empty((length, h, w, 3), dtype=np.uint8)
    for i in range(length):
        ox, oy = offs[i]
        img = np.ascontiguousarray(bg[oy : oy + h, ox : ox + w])
        for j in order:
            _, nn, traj = objects[j]
            shape, colour = NOUNS[nn][1], NOUNS[nn][2]
            _draw_object(img, shape, colour, traj[i, 0] * w, traj[i, 1] * h, r)
        # The hand grips the handled object from below; the arm comes from the bottom edge.
        hx, hy = objects[0][2][i, 0] * w, objects[0][2][i, 1] * h + 0.7 * r
        base = (int(hx + arm_dx), h + int(r))
        cv2.line(img, base, (int(hx), int(hy)), arm_c, max(3, int(0.9 * r)), cv2.LINE_AA)
        axes = (max(2, int(0.75 * r)), max(2, int(0.55 * r)))
        cv2.ellipse(img, (int(hx), int(hy)), axes, 0, 0, 360, skin_c, -1, cv2.LINE_AA)
        frames[i] = img

    # Where the person means to look, frame by frame: a sequence of fixation targets.
    gaze = np.empty((length, 2))
    onset = np.zeros(length, dtype=bool)
    on_handled = np.zeros(length, dtype=bool)
    i = 0
    while i < length:
        dur = int(rng.integers(4, 13))
        p = rng.random()
        if p < p_look_handled:
            tgt, k = objects[0][2][i : i + dur], 0
        elif p < p_look_handled + 0.6 * (1 - p_look_handled) and distractors:
            tgt, k = objects[1 + int(rng.integers(distractors))][2][i : i + dur], 1
        else:
            tgt, k = np.repeat(rng.uniform(0.05, 0.95, (1, 2)), len(u[i : i + dur]), 0), 2
        gaze[i : i + len(tgt)] = tgt
        onset[i] = True
        on_handled[i : i + len(tgt)] = k == 0
        i += dur
    return frames, gaze, onset, on_handled


def _gaze_samples(
    rng: np.random.Generator,
    target: np.ndarray,
    onset: np.ndarray,
    noise: float,
    blink_rate: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame intended targets of a session -> 30 Hz samples (frame, xy, event, time s).

    The samples of a frame where a new fixation starts are a saccade (drawn between the old
    and the new target); the others are fixations with Gaussian noise.
    """
    n_frames = len(target)
    n = int(n_frames * GAZE_HZ / FPS)
    t = np.arange(n) / GAZE_HZ
    frame = np.minimum((t * FPS).astype(np.int64), n_frames - 1)
    xy = target[frame] + rng.normal(0, noise, size=(n, 2))
    event = np.ones(n, dtype=np.int64)  # fixation
    sac = onset[frame] & (frame > 0)
    prev = target[np.maximum(frame - 1, 0)]
    mix = rng.uniform(0.2, 0.8, size=(n, 1))
    xy[sac] = (mix * prev + (1 - mix) * target[frame])[sac]
    event[sac] = 2
    # Tracking loss ('-') and blinks, in short runs.
    for code, rate, run in ((3, blink_rate, (3, 7)), (0, blink_rate / 2, (1, 4))):
        for s in np.flatnonzero(rng.random(n) < rate / GAZE_HZ):
            event[s : s + int(rng.integers(*run))] = code
    blink = event == 3
    xy[blink] = 0.0  # BeGaze writes zeros while the eye is closed
    # Rare wild samples, some outside the frame (they become "truncated" frames).
    wild = rng.random(n) < 0.01
    xy[wild] = rng.uniform(-0.2, 1.2, size=(int(wild.sum()), 2))
    return frame, xy, event, t


def _timecode(frame: int) -> str:
    s, f = divmod(int(frame), FPS)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{f:02d}"


def write_begaze(
    path: Path,
    frame: np.ndarray,
    xy: np.ndarray,
    event: np.ndarray,
    t: np.ndarray,
    layout: int,
    crlf: bool,
    subject: str,
) -> None:
    """Write samples as a BeGaze text export of the given layout (7 or 26 columns)."""
    w, h = FRAME_SIZE
    px, py = xy[:, 0] * w, xy[:, 1] * h
    time_us = (t * 1e6).astype(np.int64) + 1_000_000
    lines = [
        "## [BeGaze]",
        f"## Converted from:\tC:\\data\\{subject}.idf",
        "## Date:\t01.01.2024 12:00:00",
        "## Version:\tBeGaze 3.4.52",
        "## IDF Version:\t9",
        f"## Sample Rate:\t{GAZE_HZ}",
        "## Separator Type:\tMsg",
        "## Trial Count:\t1",
        "## Uses Plane File:\tFalse",
        f"## Number of Samples:\t{len(frame)}",
        "## Reversed:\tnone",
        "## [Run]",
        f"## Subject:\t{subject}",
        "## Description:\tsynthetic (gaze_attention.data.synthetic)",
        "## [Calibration]",
        f"## Calibration Area:\t{w}\t{h}",
        "## [Geometry]",
        "## Stimulus Dimension [mm]:\t0\t0",
        "##",
    ]
    if layout == 7:
        lines.append("\t".join(_HEADER_7))
        for i in range(len(frame)):
            lines.append(
                f"{time_us[i]}\tSMP\t1\t{px[i]:.2f}\t{py[i]:.2f}\t{frame[i]}\t{_EVENT_TOKEN[int(event[i])]}"
            )
    elif layout == 26:
        lines.append("\t".join(_HEADER_26))
        for i in range(len(frame)):
            lines.append(
                f"{time_us[i]}\tSMP\t1\t14.50\t14.50\t{px[i]:.2f}\t{py[i]:.2f}\t14.50\t14.50\t"
                f"{px[i]:.2f}\t{py[i]:.2f}\t2\t100\t-1\t-1\t0.00\t0.00\t0.00\t0.00\t0.00\t0.00"
                f"\t0.00\t0.00\t0.00\t{_timecode(frame[i])}\t{_EVENT_TOKEN[int(event[i])]}"
            )
    else:
        raise ValueError(f"layout must be 7 or 26, got {layout}")
    nl = "\r\n" if crlf else "\n"
    path.write_bytes((nl.join(lines) + nl).encode("latin-1"))


class _Writer:
    """Encode RGB frames to an MPEG-4 (Part 2) mp4: every FFmpeg build has it, and at these
    sizes it encodes about twice as fast as H.264 (encoder start-up dominates short clips)."""

    def __init__(self, path: Path, size: tuple[int, int]) -> None:
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream("mpeg4", rate=FPS)
        # Constant quantiser 2 (near lossless); FFmpeg takes it as lambda = q * FF_QP2LAMBDA (118).
        self.stream.options = {"flags": "+qscale", "global_quality": str(2 * 118)}
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        # Frames are tiny: threading costs more than it gains.
        self.stream.codec_context.thread_count = 1

    def write(self, frames: np.ndarray) -> None:
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.container.mux(self.stream.encode())
        self.container.close()


@dataclass
class SyntheticSummary:
    """What `make_synthetic_raw` wrote."""

    root: Path
    classes: list[str]
    train: int
    test: int
    sessions: list[str] = field(default_factory=list)
    short_clips: int = 0


def make_synthetic_raw(
    out_dir: str | Path,
    num_classes: int = 6,
    train_per_class: int = 40,
    test_per_class: int = 15,
    seed: int = 0,
    size: tuple[int, int] = (170, 128),
    frames: tuple[int, int] = (24, 40),
    distractors: int = 2,
    sessions: int = 4,
    session_videos: bool = False,
    gaze_noise: float = 0.015,
    p_look_handled: float = 0.75,
    blink_rate: float = 0.3,
    pairs: list[tuple[int, int]] | None = None,
) -> SyntheticSummary:
    """Write a synthetic raw EGTEA-layout data set to `out_dir` (see module docstring).

    size: (width, height), both even. frames: inclusive clip-length range. sessions: number of
    recordings (at least 2, alternating 7- and 26-column BeGaze layouts; odd ones with CRLF).
    p_look_handled: share of fixations on the handled object. blink_rate: blinks per second.
    pairs: the (verb, noun) indices of the classes (default `class_pairs(num_classes)`), e.g. a
    label set disjoint from another set's, for pre-training on other actions of the same world.
    """
    w, h = size
    if w % 2 or h % 2:
        raise ValueError(f"frame size must be even for yuv420p video, got {w}x{h}")
    if not 1 <= frames[0] <= frames[1]:
        raise ValueError(f"bad clip-length range {frames}")
    rng = np.random.default_rng(seed)
    root = Path(out_dir)
    if pairs is None:
        pairs = class_pairs(num_classes)
    pairs = [(int(v), int(n)) for v, n in pairs]
    if len(set(pairs)) != len(pairs) or not all(0 <= v < len(VERBS) and 0 <= n < len(NOUNS) for v, n in pairs):
        raise ValueError(f"pairs must be distinct (verb < {len(VERBS)}, noun < {len(NOUNS)}) indices, got {pairs}")
    num_classes = len(pairs)
    verbs_in_use = max(v for v, _ in pairs) + 1
    nouns_in_use = max(n for _, n in pairs) + 1
    if sessions < 2:
        raise ValueError(f"sessions must be at least 2 (one per BeGaze layout the set exercises), got {sessions}")
    session_names = [
        f"P{i // len(RECIPES) + 1:02d}-R{i % len(RECIPES) + 1:02d}-{RECIPES[i % len(RECIPES)]}"
        for i in range(sessions)
    ]

    # Which clips exist: (label, part), shuffled over sessions.
    plan = [(c, "train") for c in range(num_classes) for _ in range(train_per_class)]
    plan += [(c, "test") for c in range(num_classes) for _ in range(test_per_class)]
    order = rng.permutation(len(plan))
    per_session: list[list[tuple[int, str]]] = [[] for _ in range(sessions)]
    for k, j in enumerate(order):
        per_session[k % sessions].append(plan[j])

    ann = root / "action_annotation"
    for d in (ann, root / "gaze_data", root / "cropped_clips"):
        d.mkdir(parents=True, exist_ok=True)
    if session_videos:
        (root / "videos").mkdir(exist_ok=True)

    splits: dict[str, list[str]] = {"train": [], "test": []}
    short = 0
    for s, session in enumerate(session_names):
        clip_dir = root / "cropped_clips" / session
        clip_dir.mkdir(exist_ok=True)
        full = _Writer(root / "videos" / f"{session}.mp4", size) if session_videos else None
        cursor = int(rng.integers(20, 60))
        targets = [rng.uniform(0.1, 0.9, (1, 2)).repeat(cursor, 0)]  # before the first clip
        onsets = [np.eye(1, cursor, dtype=bool)[0]]
        last = None
        written = 0
        for label, part in per_session[s]:
            verb, noun = pairs[label]
            length = int(rng.integers(frames[0], frames[1] + 1))
            short += length < 24
            clip_frames, gaze, onset, _ = render_clip(
                rng, verb, noun, nouns_in_use, verbs_in_use, length, size,
                distractors=distractors, p_look_handled=p_look_handled,
            )  # fmt: skip
            start, end = cursor, cursor + length - 1
            name = (
                f"{session}-{round(start * 1000 / FPS)}-{round((end + 1) * 1000 / FPS)}"
                f"-F{start:06d}-F{end:06d}"
            )
            clip = _Writer(clip_dir / f"{name}.mp4", size)
            clip.write(clip_frames)
            clip.close()
            splits[part].append(f"{name} {label + 1} {verb + 1} {noun + 1}")
            gap = int(rng.integers(8, 30))
            if full is not None:
                # Between clips the session video holds the previous clip's last frame.
                fill = clip_frames[0] if last is None else last
                full.write(np.repeat(fill[None], start - written, 0))
                full.write(clip_frames)
                written = end + 1
            last = clip_frames[-1]
            targets += [gaze, rng.uniform(0.1, 0.9, (1, 2)).repeat(gap, 0)]
            onsets += [onset, np.eye(1, gap, dtype=bool)[0]]
            cursor = end + 1 + gap
        if full is not None:
            if last is not None:
                full.write(np.repeat(last[None], cursor - written, 0))
            full.close()
        target = np.concatenate(targets)
        frame, xy, event, t = _gaze_samples(rng, target, np.concatenate(onsets), gaze_noise, blink_rate)
        layout = 7 if s % 2 == 0 else 26
        write_begaze(
            root / "gaze_data" / f"{session}.txt",
            frame,
            xy,
            event,
            t,
            layout,
            crlf=s % 2 == 1,
            subject=session,
        )

    classes = [f"{VERBS[v]} {NOUNS[n][0]}" for v, n in pairs]
    (ann / "action_idx.txt").write_text(
        "".join(f"{VERBS[v]} {NOUNS[n][0]} {i + 1}\n" for i, (v, n) in enumerate(pairs))
    )
    (ann / "verb_idx.txt").write_text("".join(f"{VERBS[v]} {v + 1}\n" for v in range(verbs_in_use)))
    (ann / "noun_idx.txt").write_text("".join(f"{NOUNS[n][0]} {n + 1}\n" for n in range(nouns_in_use)))
    for part, lines in splits.items():
        lines.sort(key=lambda s: (int(s.split()[1]), s))
        (ann / f"{part}_split1.txt").write_text("".join(line + "\n" for line in lines))
    return SyntheticSummary(
        root=root,
        classes=classes,
        train=len(splits["train"]),
        test=len(splits["test"]),
        sessions=session_names,
        short_clips=short,
    )
