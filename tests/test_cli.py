"""The command line as a user meets it: --help, one flag vocabulary, old spellings, bad arguments."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
import yaml

from gaze_attention.cli import COMMANDS, build_parser, main

PRESETS = Path(__file__).resolve().parents[1] / "src" / "gaze_attention" / "presets"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _help(name: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _option_blocks(text: str) -> dict[str, str]:
    """{'--flag': its help text with whitespace collapsed} from the rendered --help."""
    blocks: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"  (-[\w-]+|--[\w-]+)", line)
        if m:
            current = m.group(1)
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return {k: " ".join(v.split()) for k, v in blocks.items()}


def examples(name: str) -> list[str]:
    """The example command lines at the end of `name --help` (continuation lines joined)."""
    epilog = _subparsers()[name].epilog or ""
    body = epilog.split("examples:", 1)[1] if "examples:" in epilog else ""
    return [c.strip() for c in body.replace("\\\n", " ").splitlines() if c.strip()]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_names_every_default_and_ends_with_examples(name, capsys):
    text = _help(name, capsys)
    blocks = _option_blocks(text)
    sub = _subparsers()[name]
    for action in sub._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or action.nargs == 0:
            continue  # positionals are required; on/off flags are off unless given
        block = blocks[action.option_strings[-1]]
        said = "default" in block.lower() or "(required" in block
        assert said, f"{name} {action.option_strings[-1]}: {block}"
    # the help ends with two or three real command lines of this command
    tail = text.rstrip().split("examples:")[-1]
    assert "examples:" in text and tail.strip().startswith(f"gaze-attention {name}")
    cmds = examples(name)
    assert 2 <= len(cmds) <= 3, cmds
    for cmd in cmds:
        argv = shlex.split(cmd, comments=True)
        assert argv[:2] == ["gaze-attention", name]
        ns = build_parser().parse_args(argv[1:])  # exits (status 2) on a wrong flag
        assert ns.command == name


def test_help_shows_default_values_not_just_the_word():
    # argparse's own "(default: None)" would be useless; the formatter says real values
    prepare = _option_blocks(_subparsers()["prepare"].format_help())
    assert "(default: tvl1)" in prepare["--flow"]
    assert "(default: 340x256)" in prepare["--size"]
    assert "(default: 95)" in prepare["--jpeg-quality"]
    for name in COMMANDS:
        assert "(default: None)" not in _subparsers()[name].format_help(), name


def test_train_help_shows_the_presets_effective_values():
    paper = yaml.safe_load((PRESETS / "paper.yaml").read_text())
    tiny = yaml.safe_load((PRESETS / "tiny.yaml").read_text())
    blocks = _option_blocks(_subparsers()["train"].format_help())
    for flag, section, key in (
        ("--iters", "optim", "iters"),
        ("--lr", "optim", "lr"),
        ("--batch-size", "optim", "batch_size"),
        ("--precision", "run", "precision"),
        ("--workers", "data", "workers"),
    ):
        shown = f"paper {paper[section][key]}, tiny {tiny[section][key]}"
        assert shown in blocks[flag], (flag, blocks[flag])


def test_print_config_alone(capsys):
    assert main(["train", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    paper = yaml.safe_load((PRESETS / "paper.yaml").read_text())
    assert cfg["optim"]["iters"] == paper["optim"]["iters"] and cfg["data"]["root"] is None
    assert main(["train", "--preset", "tiny", "--lr", "0.01", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["preset"] == "tiny" and cfg["optim"]["lr"] == 0.01
    # without --print-config the paths are still required
    assert main(["train", "--preset", "tiny"]) == 2
    assert "missing --data and --out" in capsys.readouterr().err


# Options that several commands share must be spelled, typed and shown the same everywhere.
# Differences on purpose: --out is a folder for demo/train and a file for visualize; --preset
# takes a YAML file in train only; --flow has `none` only where RGB-only data can be prepared.
_ALLOWED = {"--out", "--preset", "--flow", "--size", "--seed", "--workers", "--batch-size"}


def test_one_vocabulary_across_commands():
    seen: dict[str, dict[str, tuple]] = {}
    for name, sub in _subparsers().items():
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help":
                    seen.setdefault(opt, {})[name] = (
                        action.metavar,
                        tuple(action.choices) if action.choices else None,
                        action.nargs,
                        action.dest,
                    )
    shared = {opt: per for opt, per in seen.items() if len(per) > 1}
    assert {"--gaze-mode", "--checkpoint", "--reference-prefix", "--json", "--device"} <= set(shared)
    for opt, per in shared.items():
        if opt in _ALLOWED:
            metavars = {v[0] for v in per.values()}
            assert len(metavars) == 1 or opt in ("--out", "--preset", "--flow"), (opt, per)
            continue
        assert len(set(per.values())) == 1, (opt, per)
    # the meanings that used to differ
    assert set(seen["--gaze-mode"]) == {"evaluate", "predict", "visualize"}
    assert set(seen["--reference-prefix"]) == {"evaluate", "predict", "visualize"}
    assert "--mode" not in seen and "--classes" not in seen and "--quiet" not in seen
    assert set(seen["--workers"]) == {"prepare", "train", "evaluate"}
    assert {v[0] for v in seen["--workers"].values()} == {"N"}
    p = build_parser()
    for argv in (["evaluate", "--data", "d", "--checkpoint", "c"], ["predict", "v.mp4", "--checkpoint", "c"]):
        assert p.parse_args([*argv, "--json", "out.json"]).json == "out.json"  # a path in both
        assert p.parse_args([*argv, "--json"]).json == "-"  # bare: standard output, in both


@pytest.mark.parametrize(
    ("old", "new", "dest", "value"),
    [
        (["visualize", "v.mp4", "--checkpoint", "c", "--out", "o.gif", "--mode", "argmax"],
         ["visualize", "v.mp4", "--checkpoint", "c", "--out", "o.gif", "--gaze-mode", "argmax"], "gaze_mode", "argmax"),
        (["synth", "raw", "--classes", "3"], ["synth", "raw", "--num-classes", "3"], "num_classes", 3),
        (["predict", "v.mp4", "--reference-prefix", "w", "--classes", "idx.txt"],
         ["predict", "v.mp4", "--reference-prefix", "w", "--class-names", "idx.txt"], "class_names", "idx.txt"),
        (["demo", "--quiet"], ["demo", "--no-progress"], "no_progress", True),
    ],
)  # fmt: skip
def test_old_spellings_still_work_hidden_with_a_note(old, new, dest, value, capsys):
    p = build_parser()
    a, b = p.parse_args(old), p.parse_args(new)
    assert getattr(a, dest) == getattr(b, dest) == value
    assert vars(a) == vars(b)
    err = capsys.readouterr().err
    flag = next(x for x in old if x not in new and x.startswith("--"))
    assert f"{flag} is deprecated" in err and "next release" in err
    hidden = not re.search(re.escape(flag) + r"(?![\w-])", _subparsers()[old[0]].format_help())
    assert hidden, flag
    # without the old spelling there is no note
    p.parse_args(new)
    assert "deprecated" not in capsys.readouterr().err


def _bad_cases(tmp: Path) -> list[tuple[list[str], str]]:
    video = tmp / "v.mp4"
    video.write_bytes(b"")  # exists: the checks below must name the other, missing, argument
    empty = tmp / "empty"
    empty.mkdir()
    missing = str(tmp / "missing")
    return [
        (["prepare", missing, str(tmp / "out")], f"RAW_DIR {missing}: no such folder"),
        (["prepare", str(empty), str(tmp / "out"), "--annotations", missing], f"--annotations {missing}"),
        (["synth", str(video)], f"OUT_RAW_DIR {video}: is a file"),
        (["train", "--preset", "tiny", "--data", missing, "--out", str(tmp / "run")],
         f"--data {missing}: no such folder"),
        (["train", "--resume", missing], f"--resume {missing}: no such run folder"),
        (["evaluate", "--data", missing, "--checkpoint", str(empty)], f"--data {missing}: no such folder"),
        (["evaluate", "--data", str(empty), "--reference-prefix", missing], "--data: "),
        (["evaluate", "--data", str(empty), "--checkpoint", missing], f"--checkpoint {missing}: no such"),
        (["predict", missing + ".mp4", "--checkpoint", str(empty)], "VIDEO"),
        (["predict", str(video), "--checkpoint", missing], f"--checkpoint {missing}: no such"),
        (["predict", str(video), "--reference-prefix", missing], "--reference-prefix needs --class-names"),
        (["visualize", str(video), "--checkpoint", missing, "--out", str(tmp / "o.gif")],
         f"--checkpoint {missing}: no such file or folder"),
        (["visualize", str(video), "--reference-prefix", missing, "--out", str(tmp / "o.gif")],
         f"--reference-prefix {missing}: missing {missing}_base.pt"),
        (["visualize", missing, "--checkpoint", str(empty), "--out", str(tmp / "o.gif")], f"INPUT {missing}"),
        (["visualize", str(video), "--checkpoint", str(empty), "--out", str(tmp / "o.avi")], "--out must end"),
    ]  # fmt: skip


def test_bad_arguments_give_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "data.json").write_text('{"classes": 99}')
    cases = [*_bad_cases(tmp_path), (["demo", "--quick", "--out", str(tmp_path / "demo")], "other data options")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert err.startswith("error: ") and message in err, (argv, err)
        assert "\n" not in err and "Traceback" not in captured.out, (argv, err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "o.gif").exists()


def test_bad_values_are_argparse_errors_naming_the_flag(capsys):
    for argv, flag in (
        (["synth", "raw", "--size", "3"], "--size"),
        (["prepare", "raw", "out", "--jpeg-quality", "0"], "--jpeg-quality"),
        (["train", "--iters", "0"], "--iters"),
        (["evaluate", "--data", "d", "--checkpoint", "c", "--gaze-mode", "looking"], "--gaze-mode"),
        (["predict", "v.mp4", "--checkpoint", "c", "--top-k", "-1"], "--top-k"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"gaze-attention {argv[0]}: error: argument {flag}"), last
