"""The synthetic raw set: EGTEA layout, both BeGaze layouts, labels from the handled object."""

from __future__ import annotations

import numpy as np
import pytest

from gaze_attention.cli import main as cli_main
from gaze_attention.data.begaze import read_begaze
from gaze_attention.data.egtea import build_vocabulary, parse_clip_name, read_split
from gaze_attention.data.prepare import decode_video
from gaze_attention.data.synthetic import NOUNS, SKIN, VERBS, class_pairs, render_clip


def test_class_pairs_cross_verbs_and_nouns():
    pairs = class_pairs(6)
    assert len(set(pairs)) == 6
    assert {v for v, _ in pairs} == {0, 1, 2} and {n for _, n in pairs} == {0, 1}
    for n in (2, 5, 13, 36):
        assert len(set(class_pairs(n))) == n
    with pytest.raises(ValueError):
        class_pairs(37)


def test_raw_layout_and_gaze_files(tiny_raw):
    ann = tiny_raw / "action_annotation"
    train, test = read_split(ann / "train_split1.txt"), read_split(ann / "test_split1.txt")
    assert len(train) == 6 and len(test) == 3
    vocab = build_vocabulary(ann)
    assert vocab.actions == [f"{VERBS[v]} {NOUNS[n][0]}" for v, n in class_pairs(3)]
    assert [(vocab.verb_of[e.action], vocab.noun_of[e.action]) for e in train] == [
        (e.verb, e.noun) for e in train
    ]
    layouts, crlf = set(), set()
    for f in sorted((tiny_raw / "gaze_data").iterdir()):
        text = f.read_bytes()
        crlf.add(b"\r\n" in text)
        first_row = next(line for line in text.decode().splitlines() if line[:1].isdigit())
        layouts.add(len(first_row.split()))
        g = read_begaze(f)
        assert g.malformed == 0
        assert g.num_samples == g.declared_samples
        assert (g.events == 1).mean() > 0.5  # mostly fixations
        assert {2, 3} <= set(np.unique(g.events).tolist())  # saccades and blinks occur
    assert layouts == {7, 26} and crlf == {True, False}
    for e in train + test:
        c = parse_clip_name(e.name)
        video = tiny_raw / "cropped_clips" / c.session / f"{e.name}.mp4"
        frames = decode_video(video, (64, 48))
        assert len(frames) == c.num_frames
        # The session video holds the same frames at the clip's session position.
        session = decode_video(
            tiny_raw / "videos" / f"{c.session}.mp4", (64, 48), c.start_frame, c.start_frame + 2
        )
        assert np.abs(session[0].astype(int) - frames[0].astype(int)).mean() < 3


def test_gaze_follows_the_handled_object_and_the_hand_is_visible():
    rng = np.random.default_rng(0)
    hits = total = 0
    for k in range(12):
        verb, noun = k % 3, k % 2
        frames, gaze, onset, on_handled = render_clip(rng, verb, noun, 2, 3, 30, (128, 96))
        assert onset[0] and frames.shape == (30, 96, 128, 3)
        colour = np.array(NOUNS[noun][2])
        skin = (np.abs(frames.astype(int) - np.array(SKIN)).sum(-1) < 60).reshape(30, -1)
        assert skin.any(1).all(), "the hand must be visible in every frame"
        for i in np.flatnonzero(on_handled):
            x, y = int(gaze[i, 0] * 128), int(gaze[i, 1] * 96)
            patch = frames[i, max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4].reshape(-1, 3)
            hits += (np.abs(patch.astype(int) - colour).sum(-1) < 60).any()
            total += 1
    assert total > 200 and hits / total > 0.8


def test_synth_command_is_deterministic(tmp_path):
    args = ["--num-classes", "2", "--train-per-class", "1", "--test-per-class", "1", "--size", "32x24"]
    assert cli_main(["synth", str(tmp_path / "a"), *args, "--frames", "8-10", "--seed", "5"]) == 0
    assert cli_main(["synth", str(tmp_path / "b"), *args, "--frames", "8-10", "--seed", "5"]) == 0
    for rel in ("action_annotation/train_split1.txt", "gaze_data/P01-R01-PastaSalad.txt"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    with pytest.raises(SystemExit):
        cli_main(["synth", str(tmp_path / "c"), "--size", "big"])
