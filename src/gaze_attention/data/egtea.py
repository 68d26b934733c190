"""EGTEA Gaze+ annotations: clip names, split lists and the action/verb/noun index files.

Files use 1-based ids; everything returned here is 0-based (label = action id - 1).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

FPS = 24
_CLIP = re.compile(
    r"^(?P<participant>[A-Za-z]+\d+)-(?P<recipe_id>[Rr]\d+)-(?P<recipe>.+?)"
    r"-(?P<start_ms>\d+)-(?P<end_ms>\d+)-F(?P<start_frame>\d+)-F(?P<end_frame>\d+)$"
)
_SPLIT_FILE = re.compile(r"^(train|test)_split(\d+)\.txt$")


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and line."""


@dataclass(frozen=True)
class ClipName:
    """Parsed EGTEA clip name `P04-R06-GreekSalad-682170-683940-F016368-F016419`."""

    name: str
    participant: str
    recipe_id: str
    recipe: str
    start_ms: int
    end_ms: int
    start_frame: int  # session frame of the clip's first frame (24 fps)
    end_frame: int

    @property
    def session(self) -> str:
        """Session (recording) name: the gaze file and full video are named after it."""
        return f"{self.participant}-{self.recipe_id}-{self.recipe}"

    @property
    def num_frames(self) -> int:
        """Frame count implied by the name (the decoded video is authoritative)."""
        return self.end_frame - self.start_frame + 1


def parse_clip_name(name: str) -> ClipName:
    """Split an EGTEA clip name into its fields; ValueError if it does not match."""
    m = _CLIP.match(name)
    if m is None:
        raise ValueError(
            f"not an EGTEA clip name: {name!r} "
            "(expected <participant>-<recipe id>-<recipe>-<start ms>-<end ms>-F<frame>-F<frame>)"
        )
    g = m.groupdict()
    return ClipName(
        name=name,
        participant=g["participant"],
        recipe_id=g["recipe_id"],
        recipe=g["recipe"],
        start_ms=int(g["start_ms"]),
        end_ms=int(g["end_ms"]),
        start_frame=int(g["start_frame"]),
        end_frame=int(g["end_frame"]),
    )


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split list, ids converted to 0-based."""

    name: str
    action: int
    verb: int
    noun: int


def _lines(path: Path):
    with open(path, encoding="utf-8-sig", newline=None) as fh:
        for lineno, line in enumerate(fh, start=1):
            s = line.strip()
            if s and not s.startswith("#"):
                yield lineno, s


def read_split(path: str | Path) -> list[SplitEntry]:
    """Read `<clip> <action> <verb> <noun>` lines (1-based ids) into 0-based entries."""
    path = Path(path)
    entries = []
    for lineno, s in _lines(path):
        parts = s.split()
        if len(parts) != 4:
            raise AnnotationError(f"{path}:{lineno}: expected '<clip> <action> <verb> <noun>', got {s!r}")
        try:
            ids = [int(p) for p in parts[1:]]
        except ValueError:
            raise AnnotationError(f"{path}:{lineno}: ids must be integers, got {s!r}") from None
        if min(ids) < 1:
            raise AnnotationError(f"{path}:{lineno}: ids are 1-based, got {s!r}")
        entries.append(SplitEntry(parts[0], ids[0] - 1, ids[1] - 1, ids[2] - 1))
    return entries


def read_index(path: str | Path) -> list[str]:
    """Read an index file (`<name words...> <id>` per line, ids 1..N) -> names by 0-based id."""
    path = Path(path)
    names: dict[int, str] = {}
    for lineno, s in _lines(path):
        head, _, last = s.rpartition(" ")
        if not head or not last.isdigit() or int(last) < 1:
            raise AnnotationError(f"{path}:{lineno}: expected '<name> <id>', got {s!r}")
        idx = int(last) - 1
        if idx in names:
            raise AnnotationError(f"{path}:{lineno}: id {last} appears twice")
        names[idx] = head.strip()
    n = max(names) + 1 if names else 0
    return [names.get(i, f"#{i + 1}") for i in range(n)]


def find_split_files(ann_dir: str | Path) -> dict[int, dict[str, Path]]:
    """{split number: {"train": path, "test": path}} for the split lists in a folder."""
    found: dict[int, dict[str, Path]] = {}
    ann_dir = Path(ann_dir)
    if not ann_dir.is_dir():
        return found
    for p in sorted(ann_dir.iterdir()):
        m = _SPLIT_FILE.match(p.name)
        if m:
            found.setdefault(int(m.group(2)), {})[m.group(1)] = p
    return found


@dataclass
class Vocabulary:
    """Action/verb/noun names and the verb and noun of each action (all 0-based)."""

    actions: list[str]
    verbs: list[str]
    nouns: list[str]
    verb_of: list[int]
    noun_of: list[int]


def build_vocabulary(ann_dir: str | Path, entries: list[SplitEntry] | None = None) -> Vocabulary:
    """Names from `action_idx.txt`/`verb_idx.txt`/`noun_idx.txt` where present, else generic.

    An action's verb and noun come from the split lists (each line states them); actions that
    no list mentions fall back to parsing `action_idx.txt` (`<verb> <noun[,noun]>`), else -1.
    """
    ann_dir = Path(ann_dir)
    entries = list(entries or [])
    if not entries:
        for files in find_split_files(ann_dir).values():
            for p in files.values():
                entries += read_split(p)

    def names(file: str, count: int, prefix: str) -> list[str]:
        p = ann_dir / file
        got = read_index(p) if p.is_file() else []
        return got + [f"{prefix}_{i + 1}" for i in range(len(got), count)]

    n_act = max([e.action for e in entries], default=-1) + 1
    n_verb = max([e.verb for e in entries], default=-1) + 1
    n_noun = max([e.noun for e in entries], default=-1) + 1
    actions = names("action_idx.txt", n_act, "action")
    verbs = names("verb_idx.txt", n_verb, "verb")
    nouns = names("noun_idx.txt", n_noun, "noun")

    verb_of = [-1] * len(actions)
    noun_of = [-1] * len(actions)
    for e in entries:
        verb_of[e.action], noun_of[e.action] = e.verb, e.noun
    verb_id = {v.lower(): i for i, v in enumerate(verbs)}
    noun_id = {n.lower(): i for i, n in enumerate(nouns)}
    for a, name in enumerate(actions):
        if verb_of[a] >= 0:
            continue
        # Longest verb name that prefixes the action name, then its first noun.
        for v in sorted(verb_id, key=len, reverse=True):
            if name.lower().startswith(v + " "):
                first_noun = name[len(v) + 1 :].split(",")[0].strip().lower()
                verb_of[a] = verb_id[v]
                noun_of[a] = noun_id.get(first_noun, -1)
                break
    return Vocabulary(actions, verbs, nouns, verb_of, noun_of)


def read_manifest(path: Path) -> dict[str, dict]:
    """`manifest.jsonl` of prepared data, by clip; an unparsable line (a killed writer) is ignored."""
    records: dict[str, dict] = {}
    if not path.is_file():
        return records
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
                records[rec["clip"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return records


MANIFEST = "manifest.jsonl"
MANIFEST_PARTS = "manifest.shard-*-of-*.jsonl"  # written by `prepare --shard I/N`


def read_manifests(root: Path) -> dict[str, dict]:
    """Every manifest of a prepared folder merged by clip: the shard parts, then `manifest.jsonl`.

    Shards of one run are disjoint; where a clip is recorded in several files (a later run
    over the same folder, sharded or not), the last file read wins and the clip's `splits`
    are the union of all its records, so no split membership is lost.
    """
    root = Path(root)
    merged: dict[str, dict] = {}
    for path in [*sorted(root.glob(MANIFEST_PARTS)), root / MANIFEST]:
        for clip, rec in read_manifest(path).items():
            old = merged.get(clip)
            if old is not None and isinstance(old.get("splits"), list) and isinstance(rec.get("splits"), list):
                rec = {**rec, "splits": sorted(set(old["splits"]) | set(rec["splits"]))}
            merged[clip] = rec
    return merged
