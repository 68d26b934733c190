"""EGTEA Gaze+ annotations: clip names, split lists and the action/verb/noun index files.

Files use 1-based ids; everything returned here is 0-based (label = action id - 1).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from gaze_attention.errors import GazeAttentionError

FPS = 24
_CLIP = re.compile(
    r"^(?P<participant>[A-Za-z]+\d+)-(?P<recipe_id>[Rr]\d+)-(?P<recipe>.+?)"
    r"-(?P<start_ms>\d+)-(?P<end_ms>\d+)-F(?P<start_frame>\d+)-F(?P<end_frame>\d+)$"
)
_SPLIT_FILE = re.compile(r"^(train|test)_split(\d+)\.txt$")


class AnnotationError(GazeAttentionError, ValueError):
    """A malformed annotation file; the message names the file and line."""


# A clip name becomes a file or folder name under the output folder (images_rgb/<clip>/,
# gaze/<clip>.npy, .tmp/<clip>/), and those paths are deleted before being rewritten: a name
# that is not one plain path component could reach outside the output folder.
_MAX_NAME_BYTES = 200  # leaves room for suffixes and temporary prefixes within NAME_MAX (255)


def clip_name_problem(name: str) -> str | None:
    """Why `name` cannot be a clip name (a single safe path component), or None when it can."""
    if not name:
        return "the clip name is empty"
    if "\x00" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"clip name {name!r} contains a control character"
    if "/" in name or "\\" in name:
        return f"clip name {name!r} contains a path separator"
    if ".." in name:
        return f"clip name {name!r} contains '..'"
    if name.startswith("."):
        return f"clip name {name!r} starts with '.' (hidden or relative name)"
    if ":" in name:
        return f"clip name {name!r} contains ':' (a drive or stream name on Windows)"
    if name != name.strip():
        return f"clip name {name!r} starts or ends with white space"
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
        return f"clip name {name[:40]!r}... is longer than {_MAX_NAME_BYTES} bytes"
    return None


def check_clip_name(name: str, where: str = "") -> str:
    """`name` if it is a safe clip name, else AnnotationError (prefixed by `where`, e.g. file:line)."""
    why = clip_name_problem(name)
    if why is not None:
        raise AnnotationError(f"{where}: {why}" if where else why)
    return name


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
    line: int = field(default=0, compare=False)  # line in its split list (for messages)


def _lines(path: Path):
    try:
        with open(path, encoding="utf-8-sig", newline=None) as fh:
            lines = fh.readlines()
    except UnicodeDecodeError as e:
        raise AnnotationError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
        ) from None
    for lineno, line in enumerate(lines, start=1):
        s = line.strip()
        if s and not s.startswith("#"):
            yield lineno, s


def read_split(path: str | Path) -> list[SplitEntry]:
    """Read `<clip> <action> <verb> <noun>` lines (1-based ids) into 0-based entries.

    Every malformed line is reported (one AnnotationError naming the file and each line).
    """
    entries, problems = read_split_checked(path)
    if problems:
        raise AnnotationError("\n".join(problems))
    return entries


def read_split_checked(path: str | Path) -> tuple[list[SplitEntry], list[str]]:
    """(entries of the sound lines, one 'file:line: why' per malformed line) of a split list."""
    path = Path(path)
    entries = []
    problems = []
    for lineno, s in _lines(path):
        where = f"{path}:{lineno}"
        parts = s.split()
        if len(parts) != 4:
            problems.append(f"{where}: expected '<clip> <action> <verb> <noun>', got {s!r}")
            continue
        why = clip_name_problem(parts[0])
        if why is not None:
            problems.append(f"{where}: {why}")
            continue
        try:
            ids = [int(p) for p in parts[1:]]
        except ValueError:
            problems.append(f"{where}: ids must be integers, got {s!r}")
            continue
        if min(ids) < 1:
            problems.append(f"{where}: ids are 1-based, got {s!r}")
            continue
        entries.append(SplitEntry(parts[0], ids[0] - 1, ids[1] - 1, ids[2] - 1, lineno))
    return entries, problems


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


def check_split_lists(
    ann_dir: str | Path,
    files: dict[int, dict[str, Path]],
    lists: dict[int, dict[str, list[SplitEntry]]],
) -> list[str]:
    """Every problem of a set of split lists, each naming its file and line ([] when sound).

    A split needs both its train and test list; a clip appears once per split (twice would train
    it twice, or test on a training clip); ids stay within `action_idx.txt` / `verb_idx.txt` /
    `noun_idx.txt` where those files exist (an id beyond them would silently add a class).
    """
    ann_dir = Path(ann_dir)
    problems: list[str] = []
    sizes: dict[str, tuple[Path, int]] = {}
    for kind in ("action", "verb", "noun"):
        index = ann_dir / f"{kind}_idx.txt"
        if index.is_file():
            sizes[kind] = (index, len(read_index(index)))
    for n in sorted(lists):
        for part in ("train", "test"):
            if part not in files.get(n, {}):
                other = "test" if part == "train" else "train"
                problems.append(f"{ann_dir}: split {n} has {other}_split{n}.txt but no {part}_split{n}.txt")
        first: dict[str, tuple[Path, SplitEntry]] = {}
        for part in ("train", "test"):
            if part not in lists[n]:
                continue
            path = files[n][part]
            for e in lists[n][part]:
                for kind, value in (("action", e.action), ("verb", e.verb), ("noun", e.noun)):
                    if kind in sizes and value >= sizes[kind][1]:
                        index, count = sizes[kind]
                        problems.append(
                            f"{path}:{e.line}: {kind} id {value + 1} is beyond the {count} {kind}s of {index}"
                        )
                if e.name in first:
                    p0, e0 = first[e.name]
                    labels = (
                        ""
                        if e0.action == e.action
                        else f" (with action {e0.action + 1} there, {e.action + 1} here)"
                    )
                    problems.append(f"{path}:{e.line}: clip {e.name} is listed twice in split {n}: "
                                    f"also at {p0}:{e0.line}{labels}")  # fmt: skip
                else:
                    first[e.name] = (path, e)
    return problems


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
                name = rec["clip"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if isinstance(name, str) and clip_name_problem(name) is None:
                records[name] = rec
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
