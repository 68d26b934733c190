"""The .vrs reader's messages (no real recording ships with the tests)."""

from __future__ import annotations

import sys

import pytest

from gaze_attention.data.sources.samples import GazeSourceError
from gaze_attention.data.sources.vrs import rgb_frame_times


def test_missing_projectaria_tools_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "projectaria_tools.core.data_provider", None)  # import fails
    monkeypatch.setitem(sys.modules, "projectaria_tools.core", None)
    with pytest.raises(GazeSourceError) as e:
        rgb_frame_times(tmp_path / "rec.vrs")
    assert str(e.value) == (
        f"{tmp_path / 'rec.vrs'}: reading a .vrs recording needs projectaria_tools; "
        "install it with pip install 'projectaria-tools>=1.5' (or the package's [aria] extra)"
    )


def test_missing_file_is_named(tmp_path):
    pytest.importorskip("projectaria_tools.core.data_provider", reason="projectaria_tools not installed")
    with pytest.raises(GazeSourceError, match="no such .vrs file"):
        rgb_frame_times(tmp_path / "absent.vrs")
