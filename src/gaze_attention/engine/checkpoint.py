"""Checkpoints: safetensors weights plus a JSON training state, written atomically.

Layout of a run folder:
```
RUN_DIR/config.yaml                     the resolved training config
RUN_DIR/metrics.csv  RUN_DIR/tb/        scalars (CSV, TensorBoard)
RUN_DIR/checkpoints/ckpt-00001000/      model.safetensors, optimizer.safetensors, state.json
RUN_DIR/checkpoints/best-00000800/      model.safetensors, state.json (best validation score)
```
A checkpoint is a folder, written under a hidden temporary name and renamed into place, and
old ones are renamed to a hidden name before deletion: a process killed at any moment leaves
only complete checkpoints under visible names. `state.json` holds the iteration, eps, the lr
schedule, optimizer hyper-parameters, RNG states of every rank, the resolved config, the model
config and the class names; weights are the unwrapped (non-DDP) state dict.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import re
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from gaze_attention import fsio
from gaze_attention.engine.config import TrainConfig
from gaze_attention.engine.train_state import (  # noqa: F401  (CheckpointError, read_state: re-exported)
    FORMAT,
    STATE_FILE,
    CheckpointError,
    TrainState,
    read_state,
    read_train_state,
)
from gaze_attention.models import ModelConfig, build_model, load_reference_checkpoint

VERSION = 1
MODEL_FILE, OPTIM_FILE = "model.safetensors", "optimizer.safetensors"
_NAME = re.compile(r"^(ckpt|best)-(\d+)$")


class NonFiniteWeightsError(CheckpointError):
    """Weights hold NaN or infinite values: refused for saving, evaluating and resuming."""


def first_non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """'name (k of n values non-finite)' for the first floating tensor with NaN/inf, else None."""
    for name, t in tensors.items():
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                return f"{name} ({bad} of {t.numel()} values non-finite)"
    return None


def _os_error(exc: Exception, path: Path) -> OSError:
    """An OSError for a failed write, with the errno safetensors' Rust error only names in text."""
    if isinstance(exc, OSError):
        return exc
    m = re.search(r"os error (\d+)", str(exc))
    if m:
        code = int(m.group(1))
        return OSError(code, os.strerror(code), str(path))
    return OSError(f"cannot write {path}: {exc}")


# ----------------------------------------------------------------------------- RNG states


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """This process's torch (CPU and its GPU), numpy and python RNG states, JSON-able."""
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global state is what we save
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": _b64(torch.get_rng_state()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "cuda": None,
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return state


def restore_rng(state: dict[str, Any], device: torch.device | None = None) -> None:
    torch.set_rng_state(_unb64(state["torch"]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))  # noqa: NPY002
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if device is not None and device.type == "cuda" and state.get("cuda"):
        torch.cuda.set_rng_state(_unb64(state["cuda"]), device)


# ----------------------------------------------------------------------------- writing


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, shown: Path) -> None:
    """safetensors by path, into a fresh temp file (fsio): normal file mode, no link followed."""
    with fsio.atomic_path(path, parents=False, shown_as=shown) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        except Exception as exc:  # safetensors' own error type, e.g. on a full disk
            raise _os_error(exc, shown) from exc


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Strict JSON. A top-level infinite float (best_score before any validation) is left out:
    readers default it; nested non-finite values become null."""
    kept = {k: v for k, v in state.items() if not (isinstance(v, float) and not math.isfinite(v))}
    fsio.write_json(path, kept, parents=False)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unwrapped state dict as contiguous CPU tensors (channels_last weights are made contiguous)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}


def optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state split into tensors (for safetensors) and JSON (hyper-parameters, scalars)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, folder: Path, meta: dict[str, Any]) -> None:
    tensors = load_file(str(folder / OPTIM_FILE))
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, st in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(st)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def write_checkpoint(
    folder: str | os.PathLike,
    model: nn.Module,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write a checkpoint folder atomically (temporary hidden folder, then rename). Returns it.

    An existing folder of the same name is replaced (renamed away first, then deleted).
    """
    folder = Path(folder)
    weights = model_tensors(model)
    bad = first_non_finite(weights)
    if bad is not None:
        raise NonFiniteWeightsError(f"refusing to save {folder}: the weights are not finite, first {bad}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _save_tensors(weights, tmp / MODEL_FILE, folder / MODEL_FILE)
        state = dict(state, format=FORMAT, version=VERSION)
        if optimizer is not None:
            tensors, meta = optimizer_parts(optimizer)
            _save_tensors(tensors, tmp / OPTIM_FILE, folder / OPTIM_FILE)
            state["optimizer"] = meta
        _write_state(tmp / STATE_FILE, state)
        if folder.exists():
            _discard(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _discard(folder: Path) -> None:
    """Delete a checkpoint so that no half-deleted folder is ever visible under its name."""
    trash = folder.parent / f".trash-{folder.name}-{uuid.uuid4().hex[:8]}"
    os.replace(folder, trash)
    if trash.is_symlink():  # a planted link: remove the link, never what it points to
        trash.unlink()
    else:
        shutil.rmtree(trash, ignore_errors=True)


def clean_partial(ckpt_dir: str | os.PathLike) -> None:
    """Remove hidden leftovers of writes or deletions that were killed."""
    ckpt_dir = Path(ckpt_dir)
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            if p.name.startswith((".tmp-", ".trash-")):
                if p.is_symlink():
                    p.unlink()
                else:
                    shutil.rmtree(p, ignore_errors=True)


def list_checkpoints(ckpt_dir: str | os.PathLike, kind: str = "ckpt") -> list[tuple[int, Path]]:
    """(iteration, folder) of complete checkpoints of a kind ("ckpt" or "best"), oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _NAME.match(p.name)
        if m and m.group(1) == kind and (p / STATE_FILE).is_file():
            found.append((int(m.group(2)), p))
    return sorted(found)


def prune(ckpt_dir: str | os.PathLike, kind: str, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints of a kind."""
    items = list_checkpoints(ckpt_dir, kind)
    for _, p in items[: max(0, len(items) - keep)]:
        _discard(p)


def checkpoint_name(kind: str, iteration: int) -> str:
    return f"{kind}-{iteration:08d}"


# ----------------------------------------------------------------------------- reading


def resolve_checkpoint(path: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint folder from a checkpoint folder, a file inside one, or a run folder.

    In a run folder `prefer="best"` picks the newest best checkpoint, else the newest regular one;
    `prefer="last"` the newest regular one (what resuming needs).
    """
    p = Path(path)
    if p.is_file():
        if p.name in (MODEL_FILE, OPTIM_FILE, STATE_FILE):
            p = p.parent
        else:
            raise CheckpointError(
                f"{p} is not a checkpoint file (expected a {MODEL_FILE} or {STATE_FILE} of a "
                "checkpoint folder, a checkpoint folder or a run folder; for the authors' .pt files "
                "use --reference-prefix)"
            )
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if (p / STATE_FILE).is_file():
        return p
    ckpt_dir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    order = ("best", "ckpt") if prefer == "best" else ("ckpt",)
    for kind in order:
        items = list_checkpoints(ckpt_dir, kind)
        if items:
            return items[-1][1]
    raise CheckpointError(f"no checkpoint in {p} (looked for {ckpt_dir}/{{best,ckpt}}-NNNNNNNN/)")


# torch dtype -> the code safetensors writes in its header
_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def _check_header(path: Path, expected: dict[str, torch.Tensor]) -> None:
    """Refuse a file whose header gives a tensor another dtype or shape than the model's.

    Read before any data: an F32 tensor relabelled I32 has the same byte size, so it would
    otherwise load as integers and give absurd logits without a word.
    """
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = {name: (fh.get_slice(name).get_dtype(), list(fh.get_slice(name).get_shape()))
                      for name in fh.keys()}  # noqa: SIM118 - safe_open is not a mapping
    except Exception as exc:  # safetensors' own error type on a damaged header
        raise CheckpointError(f"cannot read weights {path}: {exc}") from exc
    for name, (dtype, shape) in header.items():
        want = expected.get(name)
        if want is None:
            continue  # an unexpected key: the strict load below names all of them
        want_dtype = _ST_DTYPES.get(want.dtype, str(want.dtype))
        if dtype != want_dtype:
            raise CheckpointError(
                f"{path} does not fit the model: tensor {name} is stored as {dtype}, the model expects {want_dtype}"
            )
        if shape != list(want.shape):
            raise CheckpointError(
                f"{path} does not fit the model: tensor {name} has shape {shape}, the model expects {list(want.shape)}"
            )


def load_weights(model: nn.Module, folder: str | os.PathLike) -> None:
    """Load a checkpoint's weights into a model (strict); refuses non-finite weights and
    tensors whose dtype or shape differs from the model's."""
    path = Path(folder) / MODEL_FILE
    if path.is_file():
        _check_header(path, unwrap(model).state_dict())
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc}") from exc
    bad = first_non_finite(tensors)
    if bad is not None:
        raise NonFiniteWeightsError(f"refusing to use {path}: the weights are not finite, first {bad}")
    try:
        unwrap(model).load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # missing / unexpected keys, size mismatches
        raise CheckpointError(f"{path} does not fit the model: {exc}") from exc


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why a checkpoint folder is damaged (unreadable state, truncated weights), or None if intact.

    Cheap: reads state.json and the safetensors headers, and compares each file's size with
    the size its header declares (a write cut short leaves a shorter file).
    """
    folder = Path(folder)
    try:
        state = read_state(folder)
    except CheckpointError as exc:
        return str(exc)
    files = [MODEL_FILE] + ([OPTIM_FILE] if "optimizer" in state else [])
    for name in files:
        path = folder / name
        try:
            with open(path, "rb") as fh:
                head = fh.read(8)
                if len(head) < 8:
                    return f"{path} is truncated"
                n = int.from_bytes(head, "little")
                if n > 100_000_000:
                    return f"{path} has a corrupt header"
                header = json.loads(fh.read(n))
            ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
            expected = 8 + n + max(ends, default=0)
            size = path.stat().st_size
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            return f"cannot read {path}: {exc}"
        if size != expected:
            return f"{path} is truncated or damaged ({size} bytes, its header says {expected})"
    return None


def resolve_resume(path: str | os.PathLike) -> Path:
    """The checkpoint to resume from: the newest intact ckpt-* of a run folder.

    When the newest is damaged (a write cut short by a full disk, say) the newest intact older
    one is taken with a warning naming both. A checkpoint folder given directly must be intact;
    the error then names the intact one to use instead.
    """
    p = Path(path)
    if p.is_file() or (p / STATE_FILE).is_file() or (p.exists() and _NAME.match(p.name)):
        folder = p.parent if p.is_file() else p
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        older = [f for i, f in reversed(list_checkpoints(folder.parent)) if f != folder]
        intact = next((f for f in older if checkpoint_problem(f) is None), None)
        hint = f"; resume from {intact} instead" if intact else ""
        raise CheckpointError(f"cannot resume from {folder}: {problem}{hint}")
    newest = resolve_checkpoint(p, prefer="last")
    items = list_checkpoints(newest.parent)
    damaged = []
    for _, folder in reversed(items):
        problem = checkpoint_problem(folder)
        if problem is None:
            if damaged:
                warnings.warn(
                    f"the newest checkpoint {damaged[0][0]} is damaged ({damaged[0][1]}); resuming from "
                    f"{folder}, the newest intact one",
                    stacklevel=2,
                )
            return folder
        damaged.append((folder, problem))
    what = "; ".join(f"{f.name}: {why}" for f, why in damaged)
    raise CheckpointError(f"no intact checkpoint to resume from in {newest.parent} ({what})")


class LoadedRun(NamedTuple):
    """A trained model with what it was trained on."""

    model: nn.Module  # in eval mode
    config: TrainConfig
    class_names: list[str]
    state: TrainState


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedRun:
    """One of our checkpoints with its training state.

    `path`: a checkpoint folder, its `model.safetensors` / `state.json`, or a run folder (its
    best checkpoint, else its last).
    """
    folder = resolve_checkpoint(path, prefer="best")
    state = read_train_state(folder)
    model = build_model(ModelConfig.from_dict(state.model_config))
    load_weights(model, folder)
    model.to(device).eval()
    return LoadedRun(model, TrainConfig.from_dict(state.config), list(state.class_names), state)


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig, list[str]]:
    """One of our checkpoints: (model in eval mode, training config, class names); see `load_run`."""
    run = load_run(path, device)
    return run.model, run.config, run.class_names


def load_reference_model(
    prefix: str | os.PathLike,
    num_classes: int,
    preset: str = "paper",
    device: str | torch.device = "cpu",
    **model_overrides: Any,
) -> nn.Module:
    """The authors' three files `{prefix}_base.pt`, `_gaze.pt`, `_attn.pt` in a model (eval mode)."""
    prefix = os.fspath(prefix)
    for suffix in ("_base.pt", "_gaze.pt", "_attn.pt"):
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
    model = build_model(preset, num_classes=num_classes, **model_overrides)
    load_reference_checkpoint(model, f"{prefix}_base.pt", f"{prefix}_gaze.pt", f"{prefix}_attn.pt")
    bad = first_non_finite(dict(model.state_dict()))
    if bad is not None:
        raise NonFiniteWeightsError(f"refusing to use {prefix}_*.pt: the weights are not finite, first {bad}")
    return model.to(device).eval()


def warn_world_change(saved: int, now: int) -> None:
    if saved != now:
        warnings.warn(
            f"resuming a {saved}-process run with {now} processes: data order and per-rank RNG "
            "streams differ from an uninterrupted run",
            stacklevel=2,
        )
