"""The demo's data, its pre-training and its fine-tuning runs (each leaves a `result.json`)."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from gaze_attention import fsio
from gaze_attention.demo.plan import DemoPlan, RunSpec, pretrain_pairs

Log = Callable[[str], None]


@dataclass
class RunResult:
    """One fine-tuning run, evaluated on the test split (what its `result.json` holds)."""

    name: str
    estimator: str
    seed: int
    per_class: int
    mean_class_accuracy: float
    overall_accuracy: float
    verb_accuracy: float | None
    noun_accuracy: float | None
    gaze_within_one_cell: float | None  # None for `none`, which predicts no gaze
    gaze_exact_cell: float | None
    train_seconds: float
    eval_seconds: float
    checkpoint: str | None
    history: list[dict[str, Any]] = field(default_factory=list)
    # Per test clip, in the split's order: 1 if predicted right; and its label. They give each
    # paired difference's test-sampling error (statistics.clip_sampling_se). None in runs
    # made before they were kept.
    test_correct: list[int] | None = None
    test_labels: list[int] | None = None
    threads: int | None = None  # torch's intra-op threads while it trained; None in older runs

    def to_dict(self, history: bool = True, clips: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not history:
            d.pop("history")
        if not clips:
            d.pop("test_correct")
            d.pop("test_labels")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


EVAL_BATCH = 8
_MAX_THREADS: int | None = None


def max_threads() -> int:
    """The intra-op threads torch had before `choose_threads` first changed them."""
    import torch

    global _MAX_THREADS
    if _MAX_THREADS is None:
        _MAX_THREADS = torch.get_num_threads()
    return _MAX_THREADS


def probe_seconds(
    step: Callable[[], None],
    counts: tuple[int, ...],
    set_threads: Callable[[int], None],
    rounds: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[int, float]:
    """Seconds of `step` at each thread count in `counts`, summed over interleaved rounds (a
    stall from another job counts against the count that had it). The first call after a
    change of thread count is not timed: it pays for the change, not for the step."""
    took = dict.fromkeys(counts, 0.0)
    for _ in range(rounds):
        for n in counts:
            set_threads(n)
            step()  # not timed: it pays for the change of thread count
            t = clock()
            step()
            step()
            took[n] += clock() - t
    return took


# Fewer threads must be this much faster to be chosen. Where another job holds a core they are
# 30 times faster; on a quiet machine the probe's noise made 1 thread look faster in 2 of 40
# probes (0.017 against 0.020 s), and a run on 1 thread takes twice as long.
FEWER_THREADS_MARGIN = 1.5


def fewer_threads_if_clearly_faster(took: dict[int, float], most: int) -> int:
    """The thread count to use from `probe_seconds`' times: the fastest, unless it is fewer
    than `most` by less than `FEWER_THREADS_MARGIN`."""
    best = min(took, key=took.__getitem__)
    return best if took[best] * FEWER_THREADS_MARGIN < took[most] else most


def cpu_jiffies(stat: str, cpus: set[int]) -> tuple[int, int]:
    """(busy, all) jiffies summed over `cpus` from the text of Linux's /proc/stat (its `cpuN`
    lines: user nice system idle iowait irq softirq steal ...; idle and iowait are not busy,
    steal is: the hypervisor gave that time to another machine)."""
    busy = total = 0
    for line in stat.splitlines():
        name, *values = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        v = [int(x) for x in values[:8]]
        total += sum(v)
        busy += sum(v) - v[3] - (v[4] if len(v) > 4 else 0)
    return busy, total


def threads_for_free_cores(cores: int, others_busy: float, most: int) -> int:
    """Threads for the cores other processes leave free (at least 1, at most `most`): a
    thread on a core another process holds makes every OpenMP barrier wait for it."""
    return max(1, min(most, math.floor(cores - others_busy + 0.5)))


def others_busy_cores(window: float = 0.2) -> tuple[float, int] | None:
    """(cores that other processes kept busy over `window` seconds, cores this process may
    use), from /proc/stat over the CPUs of this process's affinity; None where there is no
    such file (not Linux)."""
    stat = Path("/proc/stat")
    try:
        cpus = set(os.sched_getaffinity(0))
        before, own0 = stat.read_text(), os.times()
        time.sleep(window)
        after, own1 = stat.read_text(), os.times()
    except (OSError, AttributeError):
        return None
    (b0, _), (b1, _) = cpu_jiffies(before, cpus), cpu_jiffies(after, cpus)
    ticks = os.sysconf("SC_CLK_TCK")
    own = (own1.user + own1.system) - (own0.user + own0.system)
    return max(0.0, ((b1 - b0) / ticks - own) / window), len(cpus)


def choose_threads(log: Log | None = None, fixed: int | None = None) -> int:
    """Set torch's intra-op threads to all of them, or fewer where other processes hold cores
    now, and return the choice.

    On a 2-core machine shared with other jobs, 2 threads ran the `tiny` step 30x slower than
    1 (19.7 s against 0.67 s, load average 8), and with one other busy process 1.8x slower
    (0.87 s against 0.52 s): every OpenMP barrier waits for a thread that another process
    holds. On an idle machine 2 threads are faster (0.28 s). The load changes between runs, so
    the demo asks again before each: on Linux it counts, over 0.2 s, the CPU time other
    processes take on this process's cores (/proc/stat); elsewhere it times a small 3-D conv
    step at 1 thread and at all of them, and takes 1 only where it is clearly faster
    (`FEWER_THREADS_MARGIN`). Until 2026-12-02 it always timed single 3 ms calls of that step,
    and its choice flipped from call to call: on a 2-core AMD EPYC with one other busy process
    it chose 1 thread in 21 of 30 calls, and for a quarter of an hour with no other process of
    ours running in 16 of 30 (the cause not traced), which put 16 of a demo's 48 runs on 1
    thread (43-62 s each against about 20). Counting other processes' time chose 1 in 30 of 30
    calls with one busy process, and 2 in 60 of 60 without.

    `fixed`: use that many threads, whatever the load: a run's numbers depend on its thread
    count (5 iterations on 1 and on 2 threads left the parameters 2 % apart), so only a fixed
    count reproduces them.
    """
    import torch

    most = max_threads()  # first, so that it is the machine's count, not the one set here
    if fixed is not None:  # the user's choice (demo --threads): the same arithmetic for every run
        torch.set_num_threads(fixed)
        return fixed
    if most <= 1:
        return 1
    seen = others_busy_cores()
    if seen is not None:
        busy, cores = seen
        best = threads_for_free_cores(cores, busy, most)
        why = f"other processes kept {busy:.1f} of {cores} cores busy"
    else:
        g = torch.Generator().manual_seed(0)
        conv = torch.nn.Conv3d(16, 16, 3, padding=1, bias=False).to(memory_format=torch.channels_last_3d)
        x = torch.randn(4, 16, 8, 24, 24, generator=g).contiguous(memory_format=torch.channels_last_3d)

        def step() -> None:
            conv(x).sum().backward()

        took = probe_seconds(step, (1, most), torch.set_num_threads)
        best = fewer_threads_if_clearly_faster(took, most)
        why = f"{took[1]:.3f} s on 1 thread against {took[most]:.3f} s on {most}"
    torch.set_num_threads(best)
    if log is not None and best != most:
        log(f"{best} thread{'s' if best > 1 else ''} instead of {most} for this run: {why}")
    return best


def _make_set(raw: Path, prepared: Path, size: tuple[int, int], log: Log, **synth: Any) -> Path:
    from gaze_attention.data.prepare import prepare
    from gaze_attention.data.synthetic import make_synthetic_raw

    if not (raw / "action_annotation").exists():
        log(f"synthetic raw data set -> {raw}")
        tmp = raw.with_name(raw.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        make_synthetic_raw(tmp, size=size, **synth)
        tmp.rename(raw)
    log(f"prepare (DIS flow) -> {prepared}")
    result = prepare(raw, prepared, splits=[1], flow="dis", size=size, workers=2, progress=False)
    if result.failed:
        raise RuntimeError(f"preparing {raw} failed for {len(result.failed)} clips: {result.failed[:3]}")
    return prepared


def _data_options(plan: DemoPlan) -> dict[str, Any]:
    return {
        "classes": plan.classes,
        "train_per_class": plan.max_size,
        "test_per_class": plan.test_per_class,
        "seed": plan.data_seed,
        "size": list(plan.size),
        "pretrain_per_class": plan.pretrain_per_class if plan.pretrain else 0,
    }


def prepare_data(plan: DemoPlan, out: Path, log: Log) -> tuple[Path, Path | None]:
    """The fine-tuning set and (with `plan.pretrain`) the pre-training set, made and prepared."""
    stamp = out / "data.json"
    want = _data_options(plan)
    if stamp.exists() and json.loads(stamp.read_text()) != want:
        raise ValueError(
            f"{out} holds a demo made with other data options ({stamp}); use another --out or remove it"
        )
    fsio.write_json(stamp, want)
    prepared = _make_set(
        out / "raw",
        out / "prepared",
        plan.size,
        log,
        num_classes=plan.classes,
        train_per_class=plan.max_size,
        test_per_class=plan.test_per_class,
        seed=plan.data_seed,
    )
    pre = None
    if plan.pretrain:
        pre = _make_set(
            out / "pretrain_raw",
            out / "pretrain_prepared",
            plan.size,
            log,
            pairs=pretrain_pairs(plan.classes),
            train_per_class=plan.pretrain_per_class,
            test_per_class=1,
            seed=plan.data_seed + 1000,  # other clips, other sessions
        )
    return prepared, pre


# A demo folder's data sets, and the bulk files its siblings share by hard link: frames and
# clips are written once and never in place; manifests (which `prepare` appends to), lists and
# logs are copied, locks left out.
_DATA_SETS = ("raw", "prepared", "pretrain_raw", "pretrain_prepared")
_LINKED = {".jpg", ".mp4"}
# Present in a sibling's folder while `share_data` fills it: found there without the data stamp,
# it says the data sets beside it are an interrupted share's, not a demo's own.
_SHARING = "data.sharing"


def share_data(src: Path, dst: Path, plan: DemoPlan) -> bool:
    """Give `dst` (another backbone's folder) the data `src` made for `plan`, frames and clips
    hard-linked instead of made again: the same data options make the same bytes, and this
    saves about half a GB and half a minute per backbone. False, leaving nothing behind, where
    `dst` has data of its own, `src` has none for these options, or the file system cannot link
    (`dst` then makes its own). A share that was interrupted (its marker left, no stamp) is
    cleared and done again: the sets it had renamed into place may sit beside unfinished ones."""
    stamp = src / "data.json"
    marker = dst / _SHARING
    if marker.exists():
        if not (dst / "data.json").exists():
            for name in _DATA_SETS:
                for leftover in (dst / name, dst / f"{name}.partial"):
                    shutil.rmtree(leftover, ignore_errors=True)
        marker.unlink()
    if (dst / "data.json").exists() or any((dst / n).exists() for n in _DATA_SETS) or not stamp.is_file():
        return False
    if json.loads(stamp.read_text()) != _data_options(plan):
        return False

    def put(a: str, b: str) -> None:
        if Path(a).suffix in _LINKED:
            os.link(a, b)
        else:
            shutil.copy2(a, b)

    dst.mkdir(parents=True, exist_ok=True)
    fsio.write_text(marker, f"{src}\n")
    made = []
    try:
        for name in _DATA_SETS:
            if (src / name).is_dir():
                tmp = dst / f"{name}.partial"
                shutil.rmtree(tmp, ignore_errors=True)
                made.append(tmp)
                shutil.copytree(src / name, tmp, copy_function=put, ignore=shutil.ignore_patterns("*.lock", "*.partial"))
    except OSError:  # another file system, or no hard links there
        for tmp in made:
            shutil.rmtree(tmp, ignore_errors=True)
        marker.unlink()
        return False
    for tmp in made:
        tmp.rename(dst / tmp.name.removesuffix(".partial"))
    shutil.copy2(stamp, dst / "data.json")  # last: the data is there once the stamp is
    marker.unlink()
    return True


def pretrain_config(plan: DemoPlan, prepared: Path, out: Path) -> Any:
    """The TrainConfig of the backbone's pre-training into `out`/pretrain/run."""
    from gaze_attention.engine.config import load_config

    return load_config(
        "tiny",
        {
            **plan.pretrain_overrides(),
            "data.root": str(prepared),
            "data.workers": 0,
            "run.out": str(out / "pretrain" / "run"),
            "run.seed": plan.pretrain_seed,
            "run.tensorboard": False,
            "run.checkpoint_every": plan.pretrain_iters,
            "run.keep_last": 1,
        },
    )


def pretrain(plan: DemoPlan, prepared: Path, out: Path, log: Log) -> Path:
    """Train the backbone once without gaze; returns the two-stream backbone file (`*_base.pt`)."""
    from gaze_attention.data.memory import MemoryData
    from gaze_attention.engine.train import train
    from gaze_attention.models.reference import save_reference_checkpoint

    folder = out / "pretrain"
    base = folder / "backbone_base.pt"
    cfg = pretrain_config(plan, prepared, out)
    if base.is_file():
        # A backbone of another network or pre-training (an older demo's folder) is refused,
        # naming the difference, rather than failing to load or being reused as this one.
        _check_same_settings(folder / "run", cfg.to_dict())
        return base
    if folder.exists():
        shutil.rmtree(folder)
    log(f"pre-training the backbone without gaze ({plan.pretrain_iters} iterations) -> {folder}")
    t0 = time.perf_counter()
    res = train(cfg, progress=False, data=MemoryData(prepared))
    if res.interrupted:
        raise KeyboardInterrupt
    tmp = folder / "backbone.partial"
    paths = save_reference_checkpoint(res.model, tmp)
    for p in paths.values():
        if not p.name.endswith("_base.pt"):
            p.unlink()
    paths["base"].rename(base)
    fsio.write_json(folder / "pretrain.json", {"history": res.history, "seconds": time.perf_counter() - t0})
    return base


def pretrain_seconds(out: Path) -> float | None:
    """How long OUT's pre-training took, from its log; None without one (or a damaged one)."""
    try:
        return float(json.loads((out / "pretrain" / "pretrain.json").read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# Where a finished run lives, not what it trained: a demo folder that was moved still matches.
_WHERE = {("data", "root"), ("run", "out"), ("init", "base")}


def _check_same_settings(run_dir: Path, want: dict[str, Any]) -> None:
    """Refuse a finished run whose config.yaml differs from what the plan would train now
    (e.g. the demo rerun into the same --out with other --iters, --lr or --no-pretrain),
    naming the first differences: reusing it would report one setting's runs as another's."""
    import yaml

    path = run_dir / "config.yaml"
    try:
        had = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the finished run's settings ({exc}); remove {run_dir} to rerun it") from exc
    want = yaml.safe_load(yaml.safe_dump(want))  # as save_config writes it: tuples as lists
    diffs = []
    for section, fields_ in want.items():
        before = (had or {}).get(section) or {}
        for key, value in (fields_ or {}).items():
            if key not in before:
                continue  # a field newer than the run: the run had its default
            old = before[key]
            where = (section, key) in _WHERE  # for these only: pre-trained or not
            if ((old is None) != (value is None)) if where else old != value:
                diffs.append(f"{section}.{key}: {old!r}, now {value!r}")
    if diffs:
        raise ValueError(
            f"{run_dir} holds a finished run trained with other settings ({'; '.join(diffs[:4])}); "
            "use another --out, or remove that folder to train it again"
        )


def run_one(spec: RunSpec, plan: DemoPlan, data: Any, runs_dir: Path, base: Path | None) -> RunResult:
    """Fine-tune one arm at one size and seed, evaluate it on the test split (done runs are read back)."""
    from gaze_attention.engine.config import load_config
    from gaze_attention.engine.evaluate import evaluate
    from gaze_attention.engine.train import eval_gaze_mode, train

    run_dir = runs_dir / spec.name
    done = run_dir / "result.json"
    overrides = {
        **plan.finetune_overrides(),
        "data.root": str(data.root),
        "data.workers": 0,
        "data.max_train_per_class": spec.per_class,
        "estimator.name": spec.estimator,
        "run.out": str(run_dir),
        "run.seed": spec.seed,
        "run.tensorboard": False,
        "run.checkpoint_every": plan.iters,
        "run.keep_last": 1,
    }
    if base is not None:
        overrides["init.base"] = str(base)
    cfg = load_config("tiny-finetune", overrides)
    if done.exists():
        _check_same_settings(run_dir, cfg.to_dict())
        return RunResult.from_dict(json.loads(done.read_text()))
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run: start it again from scratch
    import torch

    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    res = train(cfg, progress=False, data=data)
    train_s = time.perf_counter() - t0
    if res.interrupted:
        raise KeyboardInterrupt
    # Test-time gaze: argmax of the predicted distribution (deterministic); `none` sees uniform gaze.
    mode = "none" if eval_gaze_mode(cfg) == "none" else "argmax"
    # 8 windows per pass: faster here than 32 or auto_batch_size's 4 on this network, with
    # bit-identical logits (benchmarks/eval_layout.py, docs/benchmarks.md).
    metrics = evaluate(res.model, data, 1, gaze_mode=mode, batch_size=EVAL_BATCH, sparse=False)
    result = RunResult(
        name=spec.name,
        estimator=spec.estimator,
        seed=spec.seed,
        per_class=spec.per_class,
        mean_class_accuracy=metrics["mean_class_accuracy"],
        overall_accuracy=metrics["overall_accuracy"],
        verb_accuracy=metrics.get("verb_accuracy"),
        noun_accuracy=metrics.get("noun_accuracy"),
        gaze_within_one_cell=metrics.get("gaze_within_one_cell"),
        gaze_exact_cell=metrics.get("gaze_exact_cell"),
        train_seconds=train_s,
        eval_seconds=metrics["seconds"],
        checkpoint=str(res.last_checkpoint) if res.last_checkpoint else None,
        history=res.history,
        test_correct=[int(c["pred"] == c["label"]) for c in metrics["clips"]],
        test_labels=[int(c["label"]) for c in metrics["clips"]],
        threads=threads,
    )
    fsio.write_json(done, result.to_dict())  # atomic: a run is done once this file exists
    return result
