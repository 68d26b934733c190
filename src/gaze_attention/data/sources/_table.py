"""CSV tables of the gaze sources: header, rows with their line numbers, typed columns."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaze_attention.data.sources.samples import GazeSourceError


@dataclass
class Table:
    """A CSV file: lower-cased header names, and each data row with its 1-based line number."""

    path: Path
    header: list[str]
    header_line: int
    rows: list[tuple[int, list[str]]]

    def col(self, name: str) -> int:
        return self.header.index(name)

    def has(self, *names: str) -> bool:
        return all(n in self.header for n in names)

    def floats(self, name: str, *, required: bool = True, finite: bool = True) -> np.ndarray:
        """[N] float64 of column `name`; empty cells are nan unless `required`.

        A cell that is not a number, or nan/inf where `finite`, is a GazeSourceError naming
        the file, line and column.
        """
        i = self.col(name)
        out = np.empty(len(self.rows), dtype=np.float64)
        for k, (line, cells) in enumerate(self.rows):
            cell = cells[i].strip() if i < len(cells) else ""
            if not cell:
                if required:
                    raise GazeSourceError(f"{self.path}:{line}: column {name} is empty")
                out[k] = math.nan
                continue
            try:
                v = float(cell)
            except ValueError:
                raise GazeSourceError(f"{self.path}:{line}: {name} {cell!r} is not a number") from None
            if finite and not math.isfinite(v):
                raise GazeSourceError(f"{self.path}:{line}: {name} is {cell} (not a finite number)")
            out[k] = v
        return out

    def strings(self, name: str) -> list[str]:
        i = self.col(name)
        return [cells[i].strip() if i < len(cells) else "" for _, cells in self.rows]

    def lines(self) -> np.ndarray:
        return np.array([line for line, _ in self.rows], dtype=np.int64)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark is dropped
    except UnicodeDecodeError as e:
        raise GazeSourceError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def first_line(path: Path) -> tuple[int, str]:
    """(line number, text) of the first non-empty line, for format detection."""
    from gaze_attention.data.begaze import _decode_text  # BeGaze exports may be UTF-16

    with open(path, "rb") as fh:
        head = fh.read(65536)
    text = _decode_text(head[: len(head) // 2 * 2])
    for n, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        if line.strip():
            return n, line.strip()
    return 1, ""


def read_table(path: str | Path) -> Table:
    """Parse a comma-separated file with a header line (CRLF, BOM and blank lines allowed)."""
    path = Path(path)
    text = read_text(path)
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    header_line = 0
    reader = csv.reader(io.StringIO(text, newline=""))
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip().lower() for c in cells]
            header_line = line
            continue
        rows.append((line, cells))
    if header is None:
        raise GazeSourceError(f"{path}: empty file")
    if not rows:
        raise GazeSourceError(f"{path}: no data rows after the header")
    return Table(path, header, header_line, rows)


def check_monotonic(t: np.ndarray, table: Table, name: str) -> None:
    """Timestamps must not go back: a GazeSourceError naming the first line where they do."""
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        k = int(back[0]) + 1
        line, prev = table.rows[k][0], table.rows[k - 1][0]
        raise GazeSourceError(
            f"{table.path}:{line}: {name} goes back in time ({t[k]!r} after {t[k - 1]!r} at line {prev})"
        )
