"""Versioned training-set snapshots: as-of joins, Parquet files, manifests, pointers.

A snapshot lives in `<datasets>/<name>/dt=<date>/run_id=<id>/` as `data.parquet` and
`manifest.json`. `_LATEST` (moved by every build) and `_CURRENT` (moved on request) hold
the snapshot's path relative to `<datasets>/<name>/`. Every file is written to a temporary
name first and renamed, so a reader never sees half a snapshot or half a pointer.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .errors import MlkitError

POINTERS = {"latest": "_LATEST", "current": "_CURRENT"}
_BY_SHIFT = np.int64(32)


def _stable_argsort_small(values: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative integers below 2**32 in two 16-bit radix passes
    (numpy sorts 16-bit keys by radix sort: linear time, no comparisons)."""
    values = np.asarray(values, dtype=np.uint32)
    if len(values) == 0 or values.max() < 1 << 16:
        return np.argsort(values.astype(np.uint16), kind="stable")
    low_first = np.argsort((values & 0xFFFF).astype(np.uint16), kind="stable")
    high = (values[low_first] >> 16).astype(np.uint16)
    return low_first[np.argsort(high, kind="stable")]


def _sorted_by_on(on: np.ndarray) -> np.ndarray | None:
    """None when `on` is already ascending, else the order that sorts it."""
    return None if len(on) < 2 or bool(np.all(on[1:] >= on[:-1])) else np.argsort(on, kind="stable")


def asof_join_index(left_by, left_on, right_by, right_on) -> np.ndarray:
    """For each left row, the index of the right row with the same `by` and the greatest
    `on` <= the left row's `on` (the latest one known at that moment), or -1.

    `by` are non-negative integers below 2**32, `on` any sortable numbers; ties on `on`
    resolve to the right row that comes last in the right frame's order. Linear passes
    after sorting by `on` (free when the frames come sorted by time, as from SQL).
    """
    left_by, right_by = np.asarray(left_by), np.asarray(right_by)
    left_on, right_on = np.asarray(left_on), np.asarray(right_on)
    right_order = _sorted_by_on(right_on)
    if right_order is not None:
        right_by, right_on = right_by[right_order], right_on[right_order]
    left_order = _sorted_by_on(left_on)
    if left_order is not None:
        left_by, left_on = left_by[left_order], left_on[left_order]
    # How many right rows each left row may see, then the last of them with its `by`:
    # right rows grouped by `by` keep ascending positions, so one search finds it.
    visible = np.searchsorted(right_on, left_on, side="right").astype(np.int64)
    by_right = _stable_argsort_small(right_by)
    right_keys = (right_by[by_right].astype(np.int64) << _BY_SHIFT) | by_right
    by_left = _stable_argsort_small(left_by)
    needles = (left_by[by_left].astype(np.int64) << _BY_SHIFT) | visible[by_left]
    position = np.searchsorted(right_keys, needles, side="left") - 1
    found = position >= 0
    found[found] = (right_keys[position[found]] >> _BY_SHIFT) == (needles[found] >> _BY_SHIFT)
    match = np.full(len(left_on), -1, dtype=np.int64)
    match[by_left] = np.where(found, by_right[np.maximum(position, 0)], -1)
    if right_order is not None:
        match = np.where(match >= 0, right_order[np.maximum(match, 0)], -1)
    if left_order is not None:
        unsorted = np.empty_like(match)
        unsorted[left_order] = match
        match = unsorted
    return match


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_snapshot(
    datasets_dir: Path,
    name: str,
    frame,
    manifest: dict,
    *,
    set_current: bool = False,
    now: datetime | None = None,
) -> Path:
    """Write frame + manifest as a new snapshot and move the pointers; returns its folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    now = now or datetime.now(UTC)
    run_id = manifest.get("run_id") or new_run_id(now)
    root = Path(datasets_dir) / name
    relative = Path(f"dt={now:%Y-%m-%d}") / f"run_id={run_id}"
    final = root / relative
    if final.exists():
        raise MlkitError(f"snapshot {final} already exists")
    staging = root / f".staging-{run_id}"
    try:
        staging.mkdir(parents=True)
        data = staging / "data.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data)
        manifest = {**manifest, "name": name, "run_id": run_id, "sha256": sha256_file(data)}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
    except OSError as exc:
        raise MlkitError(
            f"cannot write the snapshot under {root}: {exc.strerror}",
            hint="check the datasets directory (MLKIT_DATASETS_DIR) and free space",
        ) from None
    finally:
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    _atomic_write_text(root / POINTERS["latest"], f"{relative.as_posix()}\n")
    if set_current:
        _atomic_write_text(root / POINTERS["current"], f"{relative.as_posix()}\n")
    return final


def resolve_pointer(datasets_dir: Path, name: str, pointer: str) -> Path:
    """The snapshot folder a pointer (`latest` or `current`) names."""
    if pointer not in POINTERS:
        raise MlkitError(f"unknown pointer {pointer!r}", hint="use latest or current")
    file = Path(datasets_dir) / name / POINTERS[pointer]
    if not file.is_file():
        raise MlkitError(
            f"no {pointer} {name} dataset ({file} is missing)",
            hint=f"build one with `mlkit dataset build {name}`"
            + (" --set-current" if pointer == "current" else ""),
        )
    target = Path(datasets_dir) / name / file.read_text().strip()
    if not (target / "data.parquet").is_file():
        raise MlkitError(f"{file} points at {target}, which holds no data.parquet")
    return target
