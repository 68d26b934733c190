"""What a training run writes as it goes: metrics.csv, validation.csv, train.log, TensorBoard.

Rank 0 alone writes. train.log keeps what a user would have seen (config summary, a row every
`log_every` iterations, validations, warnings, the final checkpoint) for runs whose terminal
is gone; a resumed run truncates the CSVs to its starting iteration and appends to the log.
Files are opened without following links: a link planted in the run folder is refused.
"""

from __future__ import annotations

import csv
import io
import math
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from gaze_attention import fsio

SCALARS = ("loss", "ce", "kl", "do", "flip", "eps", "lr", "grad_norm", "it_per_s")


class StepTerms(NamedTuple):
    """The scalars of one training step (or their mean over a log window)."""

    loss: float
    ce: float
    kl: float
    do: float
    flip: float
    grad_norm: float


def _append(path: Path, text: str) -> None:
    """Append to a file of the run folder, never through a link."""
    with fsio.open_append(path, newline="") as fh:
        fh.write(text)


def _csv_text(row: dict[str, Any], header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(row))
    if header:
        w.writeheader()
    w.writerow(row)
    return buf.getvalue()


def truncate_csv(path: Path, start: int) -> None:
    """Keep the rows of iterations <= start (a resumed run rewrites what followed)."""
    if not path.is_file() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    if start == 0:
        path.unlink()
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    keep = [r for r in rows if int(float(r["iteration"])) <= start]
    fsio.write_text(path, "".join(_csv_text(r, header=i == 0) for i, r in enumerate(keep)), newline="")


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def _num(v: str) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


class RunLog:
    """CSV + TensorBoard scalars + the text log on rank 0; nothing elsewhere (`enabled`)."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, start: int) -> None:
        self.enabled = enabled
        self.tb = None
        self.csv_path = run_dir / "metrics.csv"
        self.val_path = run_dir / "validation.csv"
        self.log_path = run_dir / "train.log"
        self._showwarning = None
        if not enabled:
            return
        truncate_csv(self.csv_path, start)
        truncate_csv(self.val_path, start)
        if start == 0 or self.log_path.is_symlink():
            self.log_path.unlink(missing_ok=True)
        # Warnings are shown as usual and also kept in the log.
        self._showwarning = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            self.text(f"warning: {category.__name__}: {message}")
            self._showwarning(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start if start > 0 else None)
            except ImportError as exc:  # tensorboard is a dependency; keep training if it is broken
                warnings.warn(f"TensorBoard logging disabled: {exc}", stacklevel=2)

    def history(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The training and validation rows already written (a resumed run continues them)."""
        return read_rows(self.csv_path), read_rows(self.val_path)

    def row(self, path: Path, row: dict[str, Any]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        _append(path, _csv_text(row, header=new))

    def text(self, line: str) -> None:
        if self.enabled:
            _append(self.log_path, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def train(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.row(self.csv_path, row)
        self.text(
            f"iteration {int(row['iteration'])}: loss {row['loss']:.4f} ce {row['ce']:.4f} "
            f"kl {row['kl']:.4f} do {row['do']:.4f} flip {row.get('flip', math.nan):.3g} eps {row['eps']:.4g} "
            f"lr {row['lr']:.4g} grad_norm {row['grad_norm']:.3g} {row['it_per_s']:.3g} it/s"
        )
        if self.tb is not None:
            for k in SCALARS:
                if k in row:
                    self.tb.add_scalar(f"train/{k}", row[k], int(row["iteration"]))

    def validation(self, iteration: int, m: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.row(self.val_path, {"iteration": iteration, **m})
        shown = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, int | float) and v is not None)
        self.text(f"validation @ {iteration}: {shown}")
        if self.tb is not None:
            for k, v in m.items():
                if isinstance(v, int | float) and v is not None and math.isfinite(v):
                    self.tb.add_scalar(f"val/{k}", v, iteration)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self._showwarning is not None:
            warnings.showwarning = self._showwarning
            self._showwarning = None
