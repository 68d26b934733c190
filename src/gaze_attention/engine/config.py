"""Training configuration: frozen dataclasses, YAML presets and `key=value` overrides.

Defaults are the paper's setting (Min & Corso, WACV 2021; DESIGN.md §1): SGD lr 0.032,
momentum 0.9, weight decay 4e-5, lr x0.1 at iterations 8000 and 15000, 18000 iterations,
gradient norm clipped at 20, eps 1000 -> 0.1. `batch_size` is the *global* batch: it is
divided over the processes of a torchrun launch, so one process with batch 8 and four
processes with batch 8 (2 each) see the same number of clips per step.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from gaze_attention.constants import ESTIMATORS, OPTIMIZERS, PRECISIONS
from gaze_attention.fsio import write_text


def parse_yaml(text: str, where: str, *, file: bool = False) -> Any:
    """Plain YAML (safe_load) or one-line ValueError naming `where` (a flag or FILE:line:column).

    Tags such as `!!python/object/apply` are refused by safe_load; the message says so instead of
    the loader's multi-line report.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None and file else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
            tag = problem.split("tag", 1)[1].strip(" '")
            problem = f"the tag {tag.replace('tag:yaml.org,2002:', '!!')} is refused (plain YAML values only)"
        raise ValueError(f"{where}{at}: not valid YAML: {problem}") from None


def _model_spec() -> type:
    """ModelSpec: `preset` plus every ModelConfig field but num_classes, each optional (None: the
    preset's value). Derived from ModelConfig so that a new model field needs one edit there."""
    from gaze_attention.models import ModelConfig

    hints = get_type_hints(ModelConfig)
    spec_fields: list[tuple[str, Any, Any]] = [("preset", str, field(default="paper"))]
    spec_fields += [
        (f.name, hints[f.name] | None, field(default=None)) for f in fields(ModelConfig) if f.name != "num_classes"
    ]

    def overrides(self) -> dict[str, Any]:
        """The fields set (not None), as keyword arguments of `build_model`."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "preset" and getattr(self, f.name) is not None
        }

    cls = make_dataclass("ModelSpec", spec_fields, frozen=True, namespace={"overrides": overrides})
    cls.__module__ = __name__
    cls.__doc__ = "A model preset (`gaze_attention.PRESETS`) plus field overrides; num_classes comes from data."
    return cls


ModelSpec = _model_spec()


@dataclass(frozen=True)
class DataSpec:
    """Where the prepared data lives and how it is read."""

    root: str | None = None
    split: int = 1
    workers: int = 4
    max_train_per_class: int | None = None  # keep at most this many training clips per class
    val_max_clips: int | None = None  # periodic validation on a fixed subset of the test split


@dataclass(frozen=True)
class OptimSpec:
    """The optimizer and its step schedule, counted in iterations."""

    optimizer: str = "sgd"  # sgd (the paper) | adamw (beta1 = momentum; decoupled weight decay)
    lr: float = 0.032
    momentum: float = 0.9
    weight_decay: float = 4e-5
    # lr x gamma at each milestone: an iteration, or below 1 a fraction of iters (scales with --iters)
    milestones: tuple[float, ...] = (8000, 15000)
    gamma: float = 0.1
    iters: int = 18000
    clip_grad: float | None = 20.0
    batch_size: int = 8  # global: divided over the processes of a distributed run
    warmup: int = 0  # iterations of linear learning-rate warm-up from lr/warmup (0: none, the paper)
    # ViT fine-tuning (VideoMAE's recipe; models.param_groups): lr x layer_decay per block from
    # the top (1.0: one lr for all), and the schedule after warm-up: step (milestones) | cosine.
    layer_decay: float = 1.0
    schedule: str = "step"
    # Parameters kept as initialised: shell-style patterns over parameter names, e.g.
    # "backbone.*.Conv3d_*" (both I3D streams' stem); each must match at least one parameter.
    freeze: tuple[str, ...] = ()


@dataclass(frozen=True)
class EstimatorSpec:
    """Gradient estimator of the gaze distribution and the loss weights."""

    name: str = "direct"  # direct | gumbel_softmax | straight_through | none
    eps0: float = 1000.0
    eps_rate: float = 1e-3
    eps_every: int = 100
    eps_min: float = 0.1
    # When set, eps decays log-linearly from eps0 to eps_min over this fraction of optim.iters
    # (eps_rate is then derived from the run's length); null: the fixed eps_rate (the paper's).
    eps_end: float | None = None
    kl_weight: float = 1.0
    tau: float = 1.0  # temperature of gumbel_softmax / straight_through


@dataclass(frozen=True)
class InitSpec:
    """Initial weights: the authors' files (a prefix gives `_base/_gaze/_attn.pt`) or Kinetics I3D."""

    reference_prefix: str | None = None  # e.g. .../i3d_iga_best1 -> _base.pt, _gaze.pt, _attn.pt
    base: str | None = None  # two-stream backbone, e.g. the Kinetics `i3d_both_base.pt`
    gaze: str | None = None
    attn: str | None = None
    rgb: str | None = None  # single-stream Kinetics I3D (`rgb_imagenet.pt`)
    flow: str | None = None  # (`flow_imagenet.pt`)
    kinetics: str | None = None  # i3d_both_base.pt, or a folder with it or rgb/flow_imagenet.pt
    # Published backbone weights for build_model(backbone_weights=...): a Hugging Face folder
    # (config.json + model.safetensors) or a VideoMAE .pth for a ViT; a two-stream *_base.pt for I3D.
    backbone: str | None = None
    require_backbone: bool = False  # refuse to train without a backbone init (engine/init.py)

    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "require_backbone")


@dataclass(frozen=True)
class RunSpec:
    """Run folder, seed, numerics and bookkeeping."""

    out: str | None = None
    seed: int = 0
    precision: str = "fp32"  # auto | fp32 | bf16 | fp16 (autocast); auto: bf16 where faster
    channels_last: bool = True  # channels_last_3d memory format for the Conv3d stacks
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    val_every: int | None = None  # iterations between sparse validations on the test split
    checkpoint_every: int = 1000
    keep_last: int = 2
    log_every: int = 10  # iterations per CSV / TensorBoard row
    tensorboard: bool = True
    resume: str | None = None  # a run folder or a checkpoint to continue from


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; written to RUN_DIR/config.yaml and into every checkpoint."""

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    estimator: EstimatorSpec = field(default_factory=EstimatorSpec)
    init: InitSpec = field(default_factory=InitSpec)
    run: RunSpec = field(default_factory=RunSpec)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        return _from_plain(cls, d, "")

    def with_overrides(self, overrides: Mapping[str, Any] | Iterable[str]) -> TrainConfig:
        """A copy with `section.key` (or an unambiguous bare `key`) set; strings are parsed as YAML."""
        return apply_overrides(self, overrides)

    def validate(self) -> TrainConfig:
        """Raise ValueError on settings that cannot run; returns self."""
        from gaze_attention.models import PRESETS

        problems = []
        for section in fields(self):
            for f in fields(getattr(self, section.name)):
                value = getattr(getattr(self, section.name), f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    problems.append(f"{section.name}.{f.name} must be a finite number, got {value}")
        if self.model.preset not in PRESETS:
            problems.append(f"model.preset {self.model.preset!r} is not one of {', '.join(PRESETS)}")
        if self.estimator.name not in ESTIMATORS:
            problems.append(f"estimator.name {self.estimator.name!r} is not one of {', '.join(ESTIMATORS)}")
        if self.optim.optimizer not in OPTIMIZERS:
            problems.append(f"optim.optimizer {self.optim.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.run.precision not in PRECISIONS:
            problems.append(f"run.precision {self.run.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.optim.batch_size < 1:
            problems.append("optim.batch_size must be >= 1")
        if self.optim.iters < 0:
            problems.append("optim.iters must be >= 0")
        if self.optim.lr <= 0:
            problems.append("optim.lr must be positive")
        if self.estimator.eps_min <= 0 or self.estimator.eps0 <= 0:
            problems.append("estimator eps0 and eps_min must be positive")
        if self.estimator.eps_end is not None and not 0 < self.estimator.eps_end <= 1:
            problems.append("estimator.eps_end must be in (0, 1] (a fraction of optim.iters)")
        if any(not m > 0 for m in self.optim.milestones):
            problems.append("optim.milestones must be positive (iterations, or fractions of optim.iters below 1)")
        if self.optim.warmup < 0:
            problems.append("optim.warmup must be >= 0")
        if not 0 < self.optim.layer_decay <= 1:
            problems.append("optim.layer_decay must be in (0, 1]")
        if self.optim.schedule not in ("step", "cosine"):
            problems.append(f"optim.schedule {self.optim.schedule!r} is not one of step, cosine")
        if self.estimator.eps_every < 1:
            problems.append("estimator.eps_every must be >= 1")
        if self.run.keep_last < 1:
            problems.append("run.keep_last must be >= 1")
        if self.run.log_every < 1 or self.run.checkpoint_every < 1:
            problems.append("run.log_every and run.checkpoint_every must be >= 1")
        if self.data.workers < 0:
            problems.append("data.workers must be >= 0")
        if self.data.max_train_per_class is not None and self.data.max_train_per_class < 1:
            problems.append("data.max_train_per_class must be >= 1")
        if problems:
            raise ValueError("invalid training config:\n  " + "\n  ".join(problems))
        return self


def _to_plain(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check/convert a plain value against a field's type hint (int, float, str, bool, tuples, Optional)."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ValueError(f"{where} may not be null")
    if "tuple[str" in text:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"{where} must be a list of non-empty strings, got {value!r}")
        return tuple(value)
    if "tuple" in text:
        if isinstance(value, int | float):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} must be a list, got {value!r}")
        items = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{where} must be a list of numbers, got {value!r}")
            items.append(int(v) if float(v).is_integer() else float(v))  # 200 stays 200, 0.5 stays 0.5
        return tuple(items)
    base = text.replace(" | None", "").replace("None | ", "")
    if base in ("bool", "<class 'bool'>"):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if base in ("int", "<class 'int'>"):
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if base in ("float", "<class 'float'>"):
        if isinstance(value, str):
            # YAML 1.1 reads 1e-3 (no dot) as a string; a number is what the user meant.
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    if base in ("str", "<class 'str'>"):
        return str(value) if not isinstance(value, os.PathLike) else os.fspath(value)
    return value


def _from_plain(cls: type, d: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(d, Mapping):
        raise ValueError(f"{prefix or 'config'} must be a mapping, got {d!r}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown config keys under {prefix or 'top level'}: {', '.join(unknown)}")
    kwargs = {}
    for name, value in d.items():
        hint = hints[name]
        where = f"{prefix}{name}"
        if isinstance(hint, type) and is_dataclass(hint):
            kwargs[name] = _from_plain(hint, value or {}, where + ".")
        else:
            kwargs[name] = _coerce(value, hint, where)
    return cls(**kwargs)


def _all_keys(cfg: TrainConfig) -> list[str]:
    return [f"{s.name}.{f.name}" for s in fields(cfg) for f in fields(getattr(cfg, s.name))]


def resolve_key(cfg: TrainConfig, key: str) -> str:
    """`optim.lr` stays; a bare `lr` becomes `optim.lr` when exactly one section has it."""
    keys = _all_keys(cfg)
    if key in keys:
        return key
    matches = [k for k in keys if k.split(".", 1)[1] == key]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"config key {key!r} is ambiguous: {', '.join(matches)}")
    raise ValueError(f"unknown config key {key!r}; known keys: {', '.join(keys)}")


def apply_overrides(cfg: TrainConfig, overrides: Mapping[str, Any] | Iterable[str]) -> TrainConfig:
    """Set keys of a config. `overrides`: {"optim.lr": 0.1} or ["optim.lr=0.1", "iters=500"]."""
    if not isinstance(overrides, Mapping):
        parsed = {}
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not of the form key=value")
            parsed[key.strip()] = parse_yaml(text, f"--set {item}") if text.strip() else None
        overrides = parsed
    plain = cfg.to_dict()
    for key, value in overrides.items():
        section, name = resolve_key(cfg, key).split(".")
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        plain[section][name] = _to_plain(value)
    return TrainConfig.from_dict(plain)


def preset_path(name: str) -> Path:
    """Path of a bundled training preset (`paper`, `tiny`) or of a YAML file given by path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    bundled = importlib.resources.files("gaze_attention") / "presets" / f"{name}.yaml"
    if not bundled.is_file():
        raise ValueError(f"no training preset {name!r} (bundled: {', '.join(list_presets())})")
    return Path(str(bundled))


def list_presets() -> list[str]:
    folder = importlib.resources.files("gaze_attention") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_config(
    preset: str | os.PathLike = "paper", overrides: Mapping[str, Any] | Iterable[str] = ()
) -> TrainConfig:
    """A training preset (bundled name or YAML path) with overrides applied, validated."""
    path = preset_path(os.fspath(preset))
    with open(path, encoding="utf-8") as fh:
        plain = parse_yaml(fh.read(), str(path), file=True) or {}
    return TrainConfig.from_dict(plain).with_overrides(overrides).validate()


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False), parents=False)


def read_config(path: str | os.PathLike) -> TrainConfig:
    with open(path, encoding="utf-8") as fh:
        return TrainConfig.from_dict(parse_yaml(fh.read(), os.fspath(path), file=True) or {})


__all__ = [
    "PRECISIONS",
    "DataSpec",
    "EstimatorSpec",
    "InitSpec",
    "ModelSpec",
    "OptimSpec",
    "RunSpec",
    "TrainConfig",
    "apply_overrides",
    "list_presets",
    "load_config",
    "preset_path",
    "read_config",
    "resolve_key",
    "save_config",
]
