"""Annotation files: clip names, split lists, index files; the real EGTEA split-1 lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaze_attention.data.egtea import (
    AnnotationError,
    build_vocabulary,
    find_split_files,
    parse_clip_name,
    read_index,
    read_split,
)

SHARED_EGTEA = Path(__file__).resolve().parents[2] / ".." / "shared" / "egtea"


def test_parse_clip_name():
    c = parse_clip_name("P04-R06-GreekSalad-682170-683940-F016368-F016419")
    assert (c.participant, c.recipe_id, c.recipe) == ("P04", "R06", "GreekSalad")
    assert (c.start_ms, c.end_ms, c.start_frame, c.end_frame) == (682170, 683940, 16368, 16419)
    assert c.session == "P04-R06-GreekSalad" and c.num_frames == 52
    assert parse_clip_name("OP01-r02-TurkeySandwich-1-2-F000001-F000030").session == (
        "OP01-r02-TurkeySandwich"
    )
    with pytest.raises(ValueError, match="not an EGTEA clip name"):
        parse_clip_name("my_clip_01")


def test_read_split_and_errors(tmp_path):
    p = tmp_path / "train_split1.txt"
    p.write_text("a 1 2 3\r\n\r\nb 106 19 53\r\n")
    e = read_split(p)
    assert [(x.name, x.action, x.verb, x.noun) for x in e] == [("a", 0, 1, 2), ("b", 105, 18, 52)]
    p.write_text("a 1 2 3\nb 1 2\n")
    with pytest.raises(AnnotationError, match=r"train_split1\.txt:2:"):
        read_split(p)
    p.write_text("a 1 x 3\n")
    with pytest.raises(AnnotationError, match=r"train_split1\.txt:1: ids must be integers"):
        read_split(p)
    p.write_text("a 0 1 1\n")
    with pytest.raises(AnnotationError, match="1-based"):
        read_split(p)


def test_index_files_and_vocabulary(tmp_path):
    (tmp_path / "verb_idx.txt").write_text("Take 1\nMove Around 2\nCut 3\n")
    (tmp_path / "noun_idx.txt").write_text("bowl 1\ntomato 2\n")
    (tmp_path / "action_idx.txt").write_text("Take bowl 1\nMove Around tomato,bowl 2\nCut tomato 3\n")
    (tmp_path / "train_split1.txt").write_text("c1 1 1 1\n")
    (tmp_path / "test_split1.txt").write_text("c2 3 3 2\n")
    assert read_index(tmp_path / "verb_idx.txt") == ["Take", "Move Around", "Cut"]
    v = build_vocabulary(tmp_path)
    assert v.actions == ["Take bowl", "Move Around tomato,bowl", "Cut tomato"]
    assert v.verb_of == [0, 1, 2]  # action 2 from its name: longest verb prefix, first noun
    assert v.noun_of == [0, 1, 1]
    assert find_split_files(tmp_path)[1].keys() == {"train", "test"}
    (tmp_path / "noun_idx.txt").write_text("bowl 1\ntomato\n")
    with pytest.raises(AnnotationError, match=r"noun_idx\.txt:2:"):
        build_vocabulary(tmp_path)


def test_real_egtea_split1_lists():
    if not SHARED_EGTEA.is_dir():
        pytest.skip(f"EGTEA lists not found at {SHARED_EGTEA} (../shared beside the repository)")
    train = read_split(SHARED_EGTEA / "train_split1.txt")
    test = read_split(SHARED_EGTEA / "test_split1.txt")
    assert (len(train), len(test)) == (8299, 2022)
    both = train + test
    assert {e.action for e in both} == set(range(106))
    assert {e.verb for e in both} == set(range(19))
    assert len({e.noun for e in both}) == 51 and max(e.noun for e in both) == 52
    assert not {e.name for e in train} & {e.name for e in test}
    # Every clip name parses and (as the authors' lists) spans at least 24 frames.
    names = [parse_clip_name(e.name) for e in both]
    assert min(c.num_frames for c in names) >= 24
    assert len({c.session for c in names}) == 86
    # An action always has the same verb and noun.
    pairs = {}
    for e in both:
        assert pairs.setdefault(e.action, (e.verb, e.noun)) == (e.verb, e.noun)
    v = build_vocabulary(SHARED_EGTEA, both)
    assert len(v.actions) == 106 and min(v.verb_of) == 0 and min(v.noun_of) >= 0
