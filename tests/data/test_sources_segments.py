"""Segments of long videos: parsing, names, overlaps, past-the-end, frame ranges, extension."""

from __future__ import annotations

import numpy as np
import pytest

from gaze_attention.data.egtea import AnnotationError
from gaze_attention.data.sources import (
    SegmentError,
    check_segments,
    extend_range,
    read_segments,
    segment_frame_range,
)
from gaze_attention.data.sources.segments import parse_segment_name


def _write(tmp_path, text, name="labels.csv"):
    p = tmp_path / name
    p.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    return p


def test_parse_with_and_without_header(tmp_path):
    p = _write(tmp_path, "video,start,end,label,split,verb,noun,extra\nvidA,1.5,3.25,cut onion,test,cut,onion,x\nvidA,1.5,3.25,take knife\n")
    segs = read_segments(p)
    assert [s.name for s in segs] == ["vidA__0001500_0003250", "vidA__0001500_0003250-2"]
    assert segs[0].split == "test" and segs[0].verb == "cut" and segs[1].split == "train" and segs[1].line == 3
    q = _write(tmp_path, "vidB,10,20,open\n", "nohead.csv")
    (s,) = read_segments(q, frames=True)
    assert s.name == "vidB__F000010_F000020" and s.frames


@pytest.mark.parametrize(
    "row, needle",
    [
        ("v,3,2,a", ":2: end 2 is not after start 3"),
        ("v,-1,2,a", ":2: start -1 is negative"),
        ("v,x,2,a", ":2: start 'x' or end '2' is not a number"),
        ("v,1,2,a,val", ":2: split must be train or test"),
        ("..,1,2,a", ":2: clip name"),
        ("v,1,2", ":2: needs video,start,end,label"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, row, needle):
    p = _write(tmp_path, "video,start,end,label,split\n" + row + "\n")
    with pytest.raises(SegmentError) as e:
        read_segments(p)
    assert isinstance(e.value, AnnotationError) and needle in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(str(p))


def test_overlaps_and_past_the_end_are_reported(tmp_path):
    p = _write(tmp_path, "video,start,end,label\nv,0,2,a\nv,1.5,3,b\nv,3,4,c\nv,9,12,d\nv,12,13,e\nw,0,1,f\n")
    keep, problems = check_segments(read_segments(p), {"v": 10.0}, path=p)
    assert [s.label for s in keep] == ["a", "b", "c", "d"]
    text = "\n".join(problems)
    assert f"{p}:3: segment v__0001500_0003000 overlaps v__0000000_0002000 (line 2)" in text
    assert f"{p}:4:" not in text
    assert f"{p}:5: segment v__0009000_0012000 ends at 12 s, past the end of v (10 s); cut at the end" in text
    assert f"{p}:6:" in text and "starts at 12 s" in text and "skipped" in text
    assert f"{p}:7: no video 'w'" in text
    assert len(problems) == 4  # touching segments (2-3 then 3-4) do not overlap


def test_frame_ranges_follow_pts_on_variable_rate_video(tmp_path):
    p = _write(tmp_path, "v,0.1,0.3,a\n")
    (s,) = read_segments(p)
    ft = np.array([0.0, 0.05, 0.1, 0.12, 0.29, 0.3, 0.4])
    assert segment_frame_range(s, ft) == (2, 5)  # pts 0.1, 0.12, 0.29 lie in [0.1, 0.3)
    q = _write(tmp_path, "v,2,4,a\n", "f.csv")
    (sf,) = read_segments(q, frames=True)
    assert segment_frame_range(sf, ft) == (2, 5)


def test_extension_follows_prepares_rule():
    src, note = extend_range(10, 14, 10, 100)  # 4 frames -> 10: 3 before, 3 after from the video
    assert src.tolist() == list(range(7, 17)) and note["method"] == "session" and note["before"] == 3
    src, note = extend_range(10, 15, 10, 100)  # 5 missing: 2 before, 3 after
    assert src.tolist() == list(range(8, 18)) and (note["before"], note["after"]) == (2, 3)
    src, note = extend_range(1, 5, 10, 100)  # only 1 frame before exists
    assert src.tolist() == list(range(0, 10)) and note["before"] == 1 and note["after"] == 5
    src, note = extend_range(95, 99, 10, 100)  # 1 frame after exists, the rest repeats the last
    assert src.tolist() == [92, 93, 94, 95, 96, 97, 98, 99, 99, 99] and note["method"] == "session+repeat"
    src, note = extend_range(0, 4, 10, 4)  # nothing around: repeat the edges
    assert src.tolist() == [0, 0, 0, 0, 1, 2, 3, 3, 3, 3] and note["method"] == "repeat"
    src, note = extend_range(3, 30, 10, 100)
    assert note is None and src.tolist() == list(range(3, 30))


@pytest.mark.parametrize("n, min_frames", [(4, 10), (7, 24), (1, 5)])
def test_extension_matches_prepare_where_no_neighbouring_frames_exist(n, min_frames):
    from gaze_attention.data.prepare.clip import _extend

    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(n)]
    _, want, want_note = _extend(frames, min_frames, None, 0, (2, 2))
    got, note = extend_range(0, n, min_frames, n)
    assert got.tolist() == want.tolist() and note == want_note


def test_names_are_unique_and_parse_back(tmp_path):
    p = _write(tmp_path, "a__1_2,0,1,x\na,0,1,y\na__1_2,0,1,z\n")
    segs = read_segments(p)
    names = [s.name for s in segs]
    assert len(set(names)) == 3 and names[2] == "a__1_2__0000000_0001000-2"
    assert [parse_segment_name(n) for n in names] == [
        ("a__1_2", "0000000", "0001000"), ("a", "0000000", "0001000"), ("a__1_2", "0000000", "0001000")]
