"""Docs check: every command shown in README.md and docs/*.md parses, the cheap ones run.

Commands are taken from fenced shell blocks (and `gaze-attention ...` inline code): each
`gaze-attention` (or `torchrun ... -m gaze_attention`) command line is parsed by the CLI's own
parser, `python benchmarks/...` lines must name a script and flags that exist, and the
commands in RUN are executed on tiny generated data laid out under the paths the docs use.
Links between the pages must resolve, and no page may point outside the repository.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from gaze_attention.cli import COMMANDS, build_parser, main
from gaze_attention.constants import OPTIMIZER_LABELS

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console", ""}

FRESH_DEMO = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && "
    "pip install -e . && gaze-attention demo"
)
FRESH_TESTS = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && "
    'pip install -e ".[test]" && python -m pytest -q'
)

# Run for real (cwd = a workspace with demo_raw/, demo_out/prepared/, a demo-like run folder
# demo_out/runs/direct-n30-s0/ and my_video.mp4); each must appear in the docs as written.
RUN = [
    "gaze-attention train --preset tiny --print-config",
    "gaze-attention predict my_video.mp4 --checkpoint demo_out/runs/direct-n30-s0",
    "gaze-attention visualize my_video.mp4 --checkpoint demo_out/runs/direct-n30-s0 --out my_video.gif",
    "gaze-attention evaluate --data demo_out/prepared --checkpoint demo_out/runs/direct-n30-s0 "
    "--gaze-mode argmax --json eval.json",
    "gaze-attention prepare demo_raw demo_prepared --flow dis --size 170x128",
]


def _blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```(\S*)\n(.*?)^```", text, re.M | re.S)]


def _shell_lines(body: str) -> list[str]:
    joined = body.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _commands() -> list[tuple[str, str]]:
    """(page name, command line) of every shell command shown."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for lang, body in _blocks(text):
            for line in _shell_lines(body):
                first = line.split()[0]
                if lang in SHELL and (lang or first in ("gaze-attention", "torchrun")):
                    out.append((page.name, line))
        prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        for span in re.findall(r"`([^`\n]+)`", prose):
            if span.startswith(("gaze-attention ", "python benchmarks/")):
                out.append((page.name, span))
    return out


def _cli_argv(line: str) -> list[str] | None:
    """The argv after `gaze-attention` of a command line, or None if it runs something else."""
    argv = shlex.split(line, comments=True)
    for stop in (">", "|", "&&"):
        if stop in argv:
            argv = argv[: argv.index(stop)]
    if argv[:1] == ["gaze-attention"]:
        return argv[1:]
    if argv[:1] == ["torchrun"] and "gaze_attention" in argv:
        i = argv.index("gaze_attention")
        assert argv[i - 1] == "-m", line
        return argv[i + 1 :]
    return None


COMMANDS_SHOWN = _commands()


def test_the_docs_show_commands_of_every_kind():
    cli = [c for _, c in COMMANDS_SHOWN if _cli_argv(c) is not None]
    shown = {_cli_argv(c)[0] for c in cli if _cli_argv(c)}
    assert shown == set(COMMANDS), shown
    assert len(cli) > 40


@pytest.mark.parametrize(("page", "line"), [c for c in COMMANDS_SHOWN if _cli_argv(c[1]) is not None])
def test_every_cli_command_shown_parses(page, line, capsys):
    argv = _cli_argv(line)
    if argv == [argv[0]] and argv[0] in COMMANDS and argv[0] != "demo":
        return  # a bare command name in prose (e.g. `gaze-attention prepare` does that once)
    if "--help" in argv:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(argv)
        assert exit_info.value.code == 0 and "examples:" in capsys.readouterr().out
        return
    try:
        ns = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{page}: `{line}` does not parse: {capsys.readouterr().err.strip()}")
    assert ns.command == argv[0]


@pytest.mark.parametrize(("page", "line"), [c for c in COMMANDS_SHOWN if c[1].startswith("python benchmarks/")])
def test_benchmark_commands_name_real_scripts_and_flags(page, line):
    argv = shlex.split(line)
    script = ROOT / argv[1]
    assert script.is_file(), f"{page}: {argv[1]} does not exist"
    source = script.read_text(encoding="utf-8")
    for flag in (a for a in argv[2:] if a.startswith("--")):
        assert f'"{flag}"' in source, f"{page}: {argv[1]} has no option {flag}"


def test_other_shell_commands_are_known():
    """Anything else shown in a shell block is one of these (so a new kind gets a check here)."""
    allowed = ("gaze-attention ", "torchrun ", "python benchmarks/", "python3 -m venv ", "tensorboard ",
               "python -m pytest ",  # the suite itself runs these
               "NGPU=$(nvidia-smi -L")  # docs/gpu.md, for a GPU machine: counts its GPUs
    for page, line in COMMANDS_SHOWN:
        if line.startswith("pip install "):  # setting up: only torch or this package, as .ci/run does
            assert re.fullmatch(r'pip install (torch\S*|-e "?\.(\[test\])?"?)\s*(#.*)?', line), f"{page}: `{line}`"
            continue
        if line.startswith(("mkdir -p ", "curl -L -o ")):  # fetching the authors' weights: no network here
            assert not line.startswith("curl") or " https://github.com/" in line, f"{page}: `{line}`"
            continue
        if line.startswith("python -c "):  # a one-liner: it must at least compile
            compile(shlex.split(line)[2], f"{page}: {line}", "exec")
            continue
        assert line.startswith(allowed), f"{page}: no docs check covers `{line}`"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # the two fresh-machine lines, exactly (CI runs the second one through .ci/run)
    assert f"```bash\n{FRESH_DEMO}\n```" in readme
    assert f"```bash\n{FRESH_TESTS}\n```" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install --quiet torch==2.13.0" in ci and 'pip install --quiet -e ".[test]"' in ci
    assert "python -m pytest -q" in ci


def test_python_blocks_compile():
    for page in PAGES:
        for lang, body in _blocks(page.read_text(encoding="utf-8")):
            if lang == "python":
                compile(body, f"{page.name} python block", "exec")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def test_links_resolve_inside_the_repository():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "DESIGN.md" not in text, f"{page.name} cites DESIGN.md, which is not in the repository"
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            assert dest.exists(), f"{page.name}: link to {target} does not exist"
            assert ROOT in dest.parents or dest == ROOT, f"{page.name}: {target} is outside the repository"
            if anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)
                assert anchor in {_slug(h) for h in headings}, f"{page.name}: no heading #{anchor} in {path}"


def test_training_page_preset_table_matches_the_presets():
    presets = ROOT / "src" / "gaze_attention" / "presets"
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    for name in sorted(p.stem for p in presets.glob("*.yaml")):
        y = yaml.safe_load((presets / f"{name}.yaml").read_text())
        o = y["optim"]
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        ms = " and ".join(str(m) for m in o["milestones"])
        assert f"{OPTIMIZER_LABELS[o['optimizer']]} lr {o['lr']}, ×{o['gamma']} at {ms}, {o['iters']} iterations, batch {o['batch_size']}" in row
        if o.get("warmup"):
            assert f"{o['warmup']} iterations of linear warm-up" in row
        if y["estimator"].get("eps_end"):
            assert f"eps from {y['estimator']['eps0']:g} to {y['estimator']['eps_min']:g} over the whole run" in row
        assert row.rstrip(" |").endswith(y["run"]["precision"]), row


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny data at the paths the docs use: demo_raw/, demo_out/prepared/, a run folder, a video."""
    import gaze_attention as ga
    from gaze_attention.data import PreparedData
    from gaze_attention.engine import checkpoint as ck
    from gaze_attention.engine.config import load_config

    ws = tmp_path_factory.mktemp("docs")
    raw = ws / "demo_raw"
    assert main(["synth", str(raw), "--num-classes", "3", "--train-per-class", "2", "--test-per-class", "1",
                 "--size", "96x72", "--frames", "8-12", "--seed", "0"]) == 0  # fmt: skip
    prepared = ws / "demo_out" / "prepared"
    assert main(["prepare", str(raw), str(prepared), "--flow", "dis", "--size", "96x72", "--min-frames", "8",
                 "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    data = PreparedData(prepared)
    model = ga.build_model("tiny", num_classes=data.num_classes, width=0.125, frames=8, crop=64)
    over = {"data.root": str(prepared), "model.width": 0.125, "model.frames": 8, "model.crop": 64}
    cfg = load_config("tiny", over)
    state = {"iteration": 40, "config": cfg.to_dict(), "model_config": model.config.to_dict(),
             "class_names": data.classes}  # fmt: skip
    run = ws / "demo_out" / "runs" / "direct-n30-s0"  # where the demo puts its direct, seed-0 model
    ck.write_checkpoint(run / "checkpoints" / ck.checkpoint_name("ckpt", 40), model, state)
    shutil.copy(sorted((raw / "cropped_clips").rglob("*.mp4"))[0], ws / "my_video.mp4")
    return ws


@pytest.mark.parametrize("line", RUN)
def test_cheap_commands_shown_run(line, workspace, monkeypatch, capsys):
    shown = [c for _, c in COMMANDS_SHOWN]
    assert any(" ".join(shlex.split(c, comments=True)) == line for c in shown), f"not in the docs: {line}"
    monkeypatch.chdir(workspace)
    if " prepare " in line:  # its default is a process per core: spawning them costs more than 9 clips
        monkeypatch.setattr(os, "cpu_count", lambda: 1)
    capsys.readouterr()
    assert main(shlex.split(line)[1:]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    names = (workspace / "demo_out" / "prepared" / "annotations" / "action_idx.txt").read_text()
    if " predict " in line:
        assert "1. " in out and any(part in names for part in out.split("\n")[1].split()[1:3])
    elif " visualize " in line:
        assert (workspace / "my_video.gif").stat().st_size > 1000
    elif " evaluate " in line:
        m = json.loads((workspace / "eval.json").read_text())
        assert m["num_clips"] == 3 and 0 <= m["mean_class_accuracy"] <= 1
    elif " prepare " in line:
        assert len((workspace / "demo_prepared" / "manifest.jsonl").read_text().splitlines()) == 9
    elif "--print-config" in line:
        assert yaml.safe_load(out)["model"]["preset"] == "tiny"


def test_every_test_named_in_the_guarantees_exists():
    """docs/guarantees.md names the test holding each promise; a renamed test must not leave a
    promise pointing at nothing. `::test_x` alone refers to the last file named before it."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "guarantees.md").read_text(encoding="utf-8")
    current, missing = None, []
    for m in re.finditer(r"(tests/[\w/]+\.py)(?:::(test_\w+))?|::(test_\w+)", text):
        current = m.group(1) or current
        name = m.group(2) or m.group(3)
        path = root / current if current else None
        if path is None or not path.is_file():
            missing.append(str(current))
        elif name and not re.search(rf"^def {name}\(", path.read_text(encoding="utf-8"), re.M):
            missing.append(f"{current}::{name}")
    assert not missing, missing
