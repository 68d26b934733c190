"""Command-line entry point: `gaze-attention <command> ...`.

Each subcommand lives in `gaze_attention.commands.<name>` and exposes
`add_arguments(parser)`, `run(args) -> int` and `EXAMPLES` (the end of its --help); heavy
imports stay inside `run` so that `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
import warnings

from gaze_attention import __version__
from gaze_attention.commands._args import HelpFormatter

# name -> module; the one registry of subcommands.
COMMANDS: dict[str, str] = {
    "demo": "gaze_attention.commands.demo",
    "prepare": "gaze_attention.commands.prepare",
    "synth": "gaze_attention.commands.synth",
    "visualize": "gaze_attention.commands.visualize",
    "train": "gaze_attention.commands.train",
    "evaluate": "gaze_attention.commands.evaluate",
    "predict": "gaze_attention.commands.predict",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaze-attention",
        description=(
            "Egocentric activity recognition with gaze-integrated attention "
            "(Min & Corso, WACV 2021): prepare data, train, evaluate, predict, visualise."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(
            name,
            help=doc.splitlines()[0] if doc else None,
            description=doc,
            epilog=getattr(module, "EXAMPLES", None),
            formatter_class=HelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Our warnings are messages for the user, not for a developer: no source location.
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run a command. The one error boundary of the tool: an expected failure (bad input, I/O,
    checkpoint, config; see `gaze_attention.errors`) prints `error: <message>` naming the file
    or flag on one line and returns its exit code (2; 3 for a run stopped on non-finite
    numbers); an unexpected exception keeps its traceback, is reported as a bug, and returns
    1. Commands raise; they do not print errors or pick exit codes themselves."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    from gaze_attention.errors import describe, exit_code, expected_errors

    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if isinstance(exc.code, str):  # `raise SystemExit("message")` in a command
            print(f"error: {exc.code}", file=sys.stderr)
            return 2
        raise
    except expected_errors() as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return exit_code(exc)
    except Exception:
        traceback.print_exc()
        print(
            f"\nThis is a bug in gaze-attention {__version__}, not a problem with your input: please "
            "report it with the command line above and this traceback.",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
