"""The CLI's error boundary: expected failures are one message and exit 2, bugs keep a traceback."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from gaze_attention import cli
from gaze_attention.commands import evaluate as evaluate_cmd
from gaze_attention.errors import describe_os_error
from gaze_attention.models.reference import read_state_dict


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_an_unexpected_error_keeps_its_traceback_and_says_it_is_a_bug(monkeypatch, capsys, tmp_path):
    def broken(args):
        raise ZeroDivisionError("internal")

    monkeypatch.setattr(evaluate_cmd, "run", broken)
    assert cli.main(["evaluate", "--data", str(tmp_path), "--checkpoint", str(tmp_path)]) == 1
    err = _err(capsys)
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError: internal" in err
    assert "This is a bug in gaze-attention" in err and "please report it" in err


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/out/x.npy"),
            "error: /out/x.npy: the disk is full",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/ro/m.json"),
            "error: /ro/m.json: the file system is read-only",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "error: /root/x: permission denied"),
        (
            OSError(errno.EFBIG, "File too large", "a.safetensors"),
            "error: a.safetensors: the file is larger than",
        ),
        (ValueError("--model-set 'x' is not KEY=VALUE"), "error: --model-set 'x' is not KEY=VALUE"),
        (SystemExit("--out must end in .gif, .mp4 or .png"), "error: --out must end in .gif, .mp4 or .png"),
    ],
)
def test_expected_failures_are_one_line_and_exit_2(monkeypatch, capsys, tmp_path, exc, expected):
    def failing(args):
        raise exc

    monkeypatch.setattr(evaluate_cmd, "run", failing)
    assert cli.main(["evaluate", "--data", str(tmp_path), "--checkpoint", str(tmp_path)]) == 2
    err = _err(capsys)
    assert err.startswith(expected) and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_describe_os_error_names_both_paths_of_a_rename():
    exc = OSError(errno.EXDEV, "Invalid cross-device link", "a/tmp", None, "b/final")
    assert describe_os_error(exc) == "a/tmp -> b/final: Invalid cross-device link"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["predict", "v.mp4", "--checkpoint", "c", "--top-k", "0"], "--top-k: must be at least 1"),
        (["predict", "v.mp4", "--checkpoint", "c", "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["predict", "v.mp4", "--checkpoint", "c", "--batch-size", "-3"], "--batch-size: must be at least 1"),
        (
            ["evaluate", "--data", "d", "--checkpoint", "c", "--batch-size", "0"],
            "--batch-size: must be at least 1",
        ),
        (["evaluate", "--data", "d", "--checkpoint", "c", "--workers", "-1"], "--workers: must be 0 or more"),
        (["prepare", "raw", "out", "--size", "99999x99999"], "--size: '99999x99999' is larger than 8192"),
        (["predict", "v.mp4", "--checkpoint", "c", "--size", "0x10"], "--size: sizes must be positive"),
    ],
)
def test_bad_numbers_are_refused_by_flag(capsys, argv, flag):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2 and flag in _err(capsys)


class _Code:
    """Pickles as a call of a global function: what weights_only=True refuses."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_a_pickle_with_code_is_refused_with_a_plain_reason(tmp_path, capsys):
    evil = tmp_path / "evil_base.pt"
    torch.save({"w": _Code()}, evil)
    with pytest.raises(
        ValueError, match=r"holds Python code or objects \(posix\.getcwd\), not only tensors: refused"
    ):
        read_state_dict(evil)
    classes = tmp_path / "action_idx.txt"
    classes.write_text("a 1\nb 2\n")
    for suffix in ("gaze", "attn"):
        torch.save({}, tmp_path / f"evil_{suffix}.pt")
    (tmp_path / "v.mp4").write_bytes(b"")  # exists: the weights are read before the video
    args = ["predict", str(tmp_path / "v.mp4"), "--reference-prefix", str(tmp_path / "evil"),
            "--class-names", str(classes), "--preset", "tiny"]  # fmt: skip
    assert cli.main(args) == 2
    err = _err(capsys)
    assert "holds Python code" in err and "weights_only" not in err and "Traceback" not in err


def test_missing_inputs_are_messages(tmp_path, capsys):
    # evaluate: --data that is not prepared data
    assert cli.main(["evaluate", "--data", str(tmp_path / "nope"), "--checkpoint", str(tmp_path)]) == 2
    assert f"--data {tmp_path / 'nope'}: no such folder" in _err(capsys)
    (tmp_path / "notprepared").mkdir()
    assert cli.main(["evaluate", "--data", str(tmp_path / "notprepared"), "--checkpoint", str(tmp_path)]) == 2
    assert "no images_rgb/ folder" in _err(capsys)
    # visualize: a missing checkpoint
    (tmp_path / "v.mp4").write_bytes(b"")
    argv = ["visualize", str(tmp_path / "v.mp4"), "--checkpoint", str(tmp_path / "nope"), "--out", "x.gif"]
    assert cli.main(argv) == 2
    err = _err(capsys)
    assert f"--checkpoint {tmp_path / 'nope'}: no such file or folder" in err and "Traceback" not in err


def test_missing_split_list_is_a_message_in_train(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "images_rgb").mkdir(parents=True)
    (data / "test_split1.txt").write_text("clip_a 1 1 1\n")
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny", "--workers", "0",
            "--no-progress", "--set", "model.width=0.125"]  # fmt: skip
    assert cli.main(args) == 2
    err = _err(capsys)
    assert f"no train_split1.txt in {data}" in err and "Traceback" not in err


def test_unwritable_output_folder_of_prepare_is_a_message(tmp_path, capsys):
    raw = tmp_path / "raw"
    (raw / "videos").mkdir(parents=True)
    (raw / "labels.csv").write_text("clip,label\na,cut\n")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(["prepare", str(raw), str(blocker / "out"), "--no-progress", "--flow", "none"]) == 2
    err = _err(capsys)
    assert err.startswith(f"error: {blocker / 'out'}: ") and "Traceback" not in err


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("optim.milestones=[4000,7000", "error: --set optim.milestones=[4000,7000: not valid YAML: expected ','"),
        ("optim.lr=!!python/object/apply:os.system [echo]",
         "the tag !!python/object/apply:os.system is refused (plain YAML values only)"),
    ],
)
def test_bad_yaml_in_set_is_one_line_naming_the_flag(capsys, value, expected):
    assert cli.main(["train", "--preset", "tiny", "--print-config", "--set", value]) == 2
    err = _err(capsys)
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err and "bug" not in err


def test_bad_yaml_in_a_preset_file_names_file_line_and_column(tmp_path, capsys):
    preset = tmp_path / "mine.yaml"
    preset.write_text("optim:\n  lr: 0.1\n  milestones: [1, 2\nrun:\n  out: x\n")
    assert cli.main(["train", "--preset", str(preset), "--print-config"]) == 2
    err = _err(capsys)
    assert err.startswith(f"error: {preset}:4:") and "not valid YAML" in err and len(err.strip().splitlines()) == 1
    marker = tmp_path / "ran"
    preset.write_text(f"optim:\n  lr: !!python/object/apply:os.system ['touch {marker}']\n")
    assert cli.main(["train", "--preset", str(preset), "--print-config"]) == 2
    err = _err(capsys)
    assert err.startswith(f"error: {preset}:2:") and "!!python/object/apply:os.system is refused" in err
    assert len(err.strip().splitlines()) == 1 and not marker.exists()


def test_an_exponent_without_a_dot_is_a_number(capsys):
    assert cli.main(["train", "--preset", "tiny", "--print-config", "--set", "optim.lr=1e-3"]) == 0
    assert "lr: 0.001" in capsys.readouterr().out
