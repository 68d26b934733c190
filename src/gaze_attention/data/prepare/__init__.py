"""Offline data preparation: raw videos + gaze -> frames, optical flow, gaze arrays, manifest.

Three inputs are accepted (`detect_layout`):

- EGTEA Gaze+ as released: `cropped_clips/<session>/<clip>.mp4`, `gaze_data/<session>.txt`
  (BeGaze), `action_annotation/` split lists and index files; optional full session videos
  `videos/<session>.mp4` (used to extend short clips with real neighbouring frames).
- Own recordings: `videos/<clip>.mp4`, `gaze/<clip>.csv` (`frame,x,y[,type]`, normalised),
  `labels.csv` (`clip,label[,split][,verb][,noun]` with a header), optional `classes.txt`.
- Long recordings: `segments.csv` (`video,start,end,label[,split,verb,noun]`), `videos/<video>.*`
  (or `.vrs`), `gaze/<video>.csv` in any format `data.sources.read_gaze` detects; each segment
  is a clip (`segments`; see docs/sources.md).

Output (the reference's layout plus gaze and a manifest; see docs/CONTRACTS.md):
`images_rgb/<clip>/0001.jpg`, `images_flow/<clip>/{u,v}/0001.jpg`, `gaze/<clip>.npy`,
`annotations/`, `manifest.jsonl`. Each clip is written under `.tmp/` and renamed into place
when complete, then recorded in the manifest; a rerun skips recorded clips and redoes others.

Modules: `options` (PrepareOptions, ClipJob, PrepareResult, the errors), `jobs` (which clips,
their gaze), `segments` (the long-recordings layout's jobs), `clip` (one clip, `process_clip`), `pool` (worker processes), `manifest` (the
lock on OUT, the settings file, the manifest), `run` (the run, `prepare`).
"""

from gaze_attention.data.prepare.clip import _remove, decode_video, inside, process_clip
from gaze_attention.data.prepare.jobs import detect_layout, read_split_lists
from gaze_attention.data.prepare.options import (
    SETTINGS_FILE,
    VIDEO_EXTS,
    ClipError,
    ClipJob,
    PrepareError,
    PrepareOptions,
    PrepareResult,
)
from gaze_attention.data.prepare.run import prepare

__all__ = [
    "SETTINGS_FILE",
    "VIDEO_EXTS",
    "ClipError",
    "ClipJob",
    "PrepareError",
    "PrepareOptions",
    "PrepareResult",
    "_remove",
    "decode_video",
    "detect_layout",
    "inside",
    "prepare",
    "process_clip",
    "read_split_lists",
]
