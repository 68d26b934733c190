"""Class, verb and noun names of an annotation file, and the EGTEA-style files made from them
(own recordings and segments of long recordings share these)."""

from __future__ import annotations

from pathlib import Path

from gaze_attention.data.shards import atomic_write_text


def read_classes(raw: Path, labels: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The class names (RAW/classes.txt, else the labels used) and a problem per unknown label.

    labels: (where, label) of each annotation line.
    """
    classes_file = raw / "classes.txt"
    if not classes_file.is_file():
        return sorted({lab for _, lab in labels}), []
    classes = [s.strip() for s in classes_file.read_text(encoding="utf-8-sig").splitlines() if s.strip()]
    known = set(classes)
    return classes, [f"{where}: label {lab!r} not in {classes_file}" for where, lab in labels if lab not in known]


def label_vocabulary(rows: list[dict[str, str]], classes: list[str]) -> tuple[list[str], list[str]]:
    """Verb and noun names (the classes where the rows name none)."""
    verbs = sorted({r["verb"] for r in rows if r.get("verb")}) or classes
    nouns = sorted({r["noun"] for r in rows if r.get("noun")}) or classes
    return verbs, nouns


def label_ids(row: dict[str, str], cid: dict[str, int], vid: dict[str, int], nid: dict[str, int]) -> tuple[int, int, int]:
    """0-based (action, verb, noun) of an annotation row."""
    a = cid[row["label"]]
    v = vid[row["verb"]] if row.get("verb") else vid.get(row["label"], a)
    n = nid[row["noun"]] if row.get("noun") else nid.get(row["label"], a)
    return a, v, n


def write_annotation_files(
    ann_out: Path, classes: list[str], verbs: list[str], nouns: list[str], lines: dict[str, list[str]]
) -> None:
    """The EGTEA-style index files and train/test lists of split 1 (own recordings, segments)."""
    ann_out.mkdir(parents=True, exist_ok=True)
    for fname, names in (("action_idx", classes), ("verb_idx", verbs), ("noun_idx", nouns)):
        atomic_write_text(ann_out / f"{fname}.txt", "".join(f"{s} {i + 1}\n" for i, s in enumerate(names)))
    for part, ls in lines.items():
        atomic_write_text(ann_out / f"{part}_split1.txt", "".join(x + "\n" for x in ls))
