"""The flag vocabulary shared by the subcommands (one name, one meaning, one metavar).

Every command builds its common options with the `add_*` helpers below, so that e.g.
`--gaze-mode` or `--reference-prefix PREFIX` reads and behaves the same in `evaluate`,
`predict` and `visualize`. docs/cli.md lists the vocabulary. Old spellings stay as hidden
aliases (`add_deprecated_alias`) for one release: they still work and print a note on use.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gaze_attention.constants import EVAL_GAZE_MODES, PRECISIONS

GAZE_MODES = ("auto", *EVAL_GAZE_MODES)  # auto: none for models trained without gaze, else sample


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks and names every option's default.

    An option whose help does not say "default" gets "(default: X)" appended, unless X is
    None or the option is an on/off flag (off unless given). Options whose default is None
    must therefore say in words what happens without them.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "default" in help_text.lower() or action.help == argparse.SUPPRESS:
            return help_text
        if not action.option_strings or action.nargs == 0:
            return help_text
        if action.default is None or action.default == argparse.SUPPRESS:
            return help_text
        default = action.default
        if isinstance(default, tuple) and len(default) == 2 and all(isinstance(v, int) for v in default):
            default = f"{default[0]}x{default[1]}"  # a WxH size, as it is typed
        elif isinstance(default, list | tuple):
            default = " ".join(str(v) for v in default)
        return f"{help_text} (default: {str(default).replace('%', '%%')})"


MAX_SIDE = 8192  # pixels; a frame beyond this is a typo (99999x99999 would be 30 GB per frame)


def frame_size(text: str) -> tuple[int, int]:
    """`WxH` (e.g. 340x256) -> (width, height), both in 1..MAX_SIDE."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 340x256, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is larger than {MAX_SIDE} pixels a side; the paper uses 340x256"
        )
    return w, h


def _whole_number(text: str, minimum: int, bound: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, top-k, counts)."""
    return _whole_number(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (worker counts, where 0 means the main process)."""
    return _whole_number(text, 0, "0 or more")


def _deprecation_note(old: str, new: str) -> None:
    print(
        f"gaze-attention: note: {old} is deprecated and will be removed in the next release; use {new}",
        file=sys.stderr,
    )


class _DeprecatedStore(argparse.Action):
    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        _deprecation_note(option_string or self.option_strings[0], self.new)
        setattr(namespace, self.dest, values)


class _DeprecatedConst(argparse.Action):
    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        _deprecation_note(option_string or self.option_strings[0], self.new)
        setattr(namespace, self.dest, self.const)


def add_deprecated_alias(
    parser: argparse.ArgumentParser | Any, old: str, new: str, dest: str, **kwargs: Any
) -> None:
    """`old` does what `new` does (same dest, type, choices), is hidden from --help and says so on use.

    For an on/off flag pass `const=True` (or the value to store); otherwise pass the `type` /
    `choices` / `metavar` of the new option.
    """
    if "const" in kwargs:
        parser.add_argument(
            old, dest=dest, action=_DeprecatedConst, new=new, help=argparse.SUPPRESS, default=argparse.SUPPRESS,
            const=kwargs.pop("const"),
        )  # fmt: skip
    else:
        parser.add_argument(
            old, dest=dest, action=_DeprecatedStore, new=new, help=argparse.SUPPRESS, default=argparse.SUPPRESS,
            **kwargs,
        )  # fmt: skip


def add_model_source_arguments(parser: argparse.ArgumentParser, *, with_model_set: bool = True) -> None:
    """--checkpoint CKPT | --reference-prefix PREFIX (one required), --preset, --model-set."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help="one of our models: a run folder (its best checkpoint, else its last), a checkpoint "
        "folder or a file inside one (required, or --reference-prefix)",
    )
    src.add_argument(
        "--reference-prefix",
        metavar="PREFIX",
        help="the authors' released files PREFIX_base.pt, PREFIX_gaze.pt, PREFIX_attn.pt, "
        "e.g. weights/i3d_iga_best1 (required, or --checkpoint)",
    )
    parser.add_argument(
        "--preset",
        default="paper",
        metavar="NAME",
        help="model preset (paper or tiny) of --reference-prefix files",
    )
    if with_model_set:
        parser.add_argument(
            "--model-set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a model field of --reference-prefix files that differs from the preset, e.g. "
            "width=0.5 (repeatable; default: none)",
        )


def model_overrides(items: list[str]) -> dict[str, object]:
    """--model-set KEY=VALUE items -> {key: value}, values parsed as YAML (0.5, true, [1, 2])."""
    from gaze_attention.engine.config import parse_yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--model-set {item!r} is not KEY=VALUE")
        out[key.strip()] = parse_yaml(value, f"--model-set {item}")
    return out


def add_class_names_argument(parser: argparse.ArgumentParser) -> None:
    """--class-names FILE (alias --classes): the action names of --reference-prefix weights."""
    parser.add_argument(
        "--class-names",
        metavar="FILE",
        help="action_idx.txt naming the classes of --reference-prefix files (default: none; "
        "required with --reference-prefix)",
    )
    add_deprecated_alias(parser, "--classes", "--class-names FILE", "class_names", metavar="FILE")


def add_gaze_mode_argument(parser: argparse.ArgumentParser) -> None:
    """--gaze-mode: the gaze the attention head sees at test time."""
    parser.add_argument(
        "--gaze-mode",
        choices=GAZE_MODES,
        default="auto",
        help="gaze the attention head sees: sample (one Gumbel-max draw per window, as the "
        "authors test), argmax, expected (the softmax), none; auto = none for models trained "
        "without gaze, else sample",
    )


def resolve_gaze_mode(requested: str | None, automatic: str) -> str:
    """The gaze mode to use: `automatic` for 'auto' (or None), else what was asked."""
    return automatic if requested in (None, "auto") else requested


def add_windows_arguments(parser: argparse.ArgumentParser) -> None:
    """--dense (default) / --sparse: which windows of a clip are classified."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dense", dest="sparse", action="store_false", help="every non-overlapping window (the default)"
    )
    mode.add_argument("--sparse", dest="sparse", action="store_true", help="at most 10 evenly spaced windows")
    parser.set_defaults(sparse=False)


def add_precision_argument(
    parser: argparse.ArgumentParser, default: str | None = "fp32", default_text: str | None = None
) -> None:
    """--precision: autocast precision. `default_text` says the default in words when it is None."""
    tail = f" (default: {default_text})" if default_text else ""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=default,
        help="autocast precision: auto (bf16 where the device runs it faster, else fp32; the choice "
        "is printed), fp32, bf16 or fp16 (GPUs)" + tail,
    )


def add_device_argument(
    parser: argparse.ArgumentParser, default: str | None = "auto", default_text: str | None = None
) -> None:
    tail = f" (default: {default_text})" if default_text else ""
    parser.add_argument(
        "--device",
        default=default,
        metavar="DEVICE",
        help="auto (cuda if available, else cpu), cpu, cuda or cuda:N" + tail,
    )


def add_workers_argument(
    parser: argparse.ArgumentParser, default: int | None, what: str, default_text: str | None = None
) -> None:
    """--workers N: processes that read or prepare data beside the main one (0: the main one does)."""
    tail = f" (default: {default_text})" if default_text else ""
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        default=default,
        metavar="N",
        help=f"data worker processes: {what}; 0 = in the main process" + tail,
    )


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """--json PATH: write the results as JSON to PATH ('-' or no PATH: standard output)."""
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help=f"write {what} as JSON to PATH; '-' or no PATH = standard output (default: not written)",
    )


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """--batch-size, --precision and --device, as `evaluate` and `predict` take them."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="windows per forward pass (default: 8 on a GPU; on a CPU about one 24x224x224 window's worth)",
    )
    add_precision_argument(parser, default="auto")
    add_device_argument(parser)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def error(message: str) -> int:
    """Refuse a command line: `cli.main` prints the message as one line and exits with 2.

    Written `return error(...)` where a command gives up, so the intent reads at the call."""
    from gaze_attention.errors import UsageError

    raise UsageError(message)
