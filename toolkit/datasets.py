"""Versioned training-set snapshots: as-of joins, Parquet files, manifests, pointers.

A snapshot is `<datasets>/<name>/dt=<date>/run_id=<id>/{data.parquet,manifest.json}`; the `_LATEST`
and `_CURRENT` pointers hold its path relative to `<datasets>/<name>/`. Every file is written under
a temporary name and renamed, so a reader never sees half a snapshot or half a pointer.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .clock import utcnow
from .errors import MlkitError

if TYPE_CHECKING:
    import numpy as np

POINTERS = {"latest": "_LATEST", "current": "_CURRENT"}


def asof_join_index(left_by, left_on, right_by, right_on) -> np.ndarray:
    """For each left row, the index of the right row with the same `by` and the greatest `on` <= the
    left row's `on`, or -1; ties on `on` go to the right row that comes last.
    """
    import numpy as np
    import pandas as pd

    # copy=False: the frames wrap the caller's arrays instead of stacking them into blocks.
    left = pd.DataFrame({"by": np.asarray(left_by), "on": np.asarray(left_on)}, copy=False)
    positions = np.arange(len(right_by), dtype=np.int64)
    right = pd.DataFrame(
        {"by": np.asarray(right_by), "on": np.asarray(right_on), "index": positions}, copy=False
    )
    if not right["on"].is_monotonic_increasing:
        right = right.sort_values("on", kind="stable")
    left_order = None
    if not left["on"].is_monotonic_increasing:
        left_order = np.argsort(left["on"].to_numpy(), kind="stable")
        left = left.iloc[left_order]
    matched = pd.merge_asof(left, right, on="on", by="by", direction="backward")
    found = matched["index"].fillna(-1).to_numpy(dtype=np.int64)
    if left_order is None:
        return found
    out = np.empty_like(found)
    out[left_order] = found
    return out


def new_run_id(now: datetime | None = None) -> str:
    now = now or utcnow()
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_mkdir(path: Path) -> None:
    """Create `path` and any missing parents readable by their owner only (0700); folders
    that already exist keep their mode."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # created concurrently: fine, as long as it is a folder
            if not folder.is_dir():
                raise
            continue
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is masked by the umask


def make_private(path: Path) -> None:
    """Owner-only access (0600) to a file mlkit wrote (models and customers' features)."""
    os.chmod(path, PRIVATE_FILE)


def _atomic_write_text(path: Path, text: str) -> None:
    private_mkdir(path.parent)
    # mkstemp creates the file 0600, so the renamed file stays private.
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
    """Write frame + manifest as a new snapshot and move the pointers; returns its folder.
    `frame` may be a callable writing data.parquet at the path it is given (Spark's rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    now = now or utcnow()
    run_id = manifest.get("run_id") or new_run_id(now)
    root = Path(datasets_dir) / name
    relative = Path(f"dt={now:%Y-%m-%d}") / f"run_id={run_id}"
    final = root / relative
    if final.exists():
        raise MlkitError(f"snapshot {final} already exists")
    staging = root / f".staging-{run_id}"
    try:
        private_mkdir(staging.parent)
        staging.mkdir(mode=PRIVATE_DIR)
        os.chmod(staging, PRIVATE_DIR)
        data = staging / "data.parquet"
        if callable(frame):
            frame(data)
        else:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data)
        make_private(data)
        manifest = {**manifest, "name": name, "run_id": run_id, "sha256": sha256_file(data)}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        make_private(staging / "manifest.json")
        private_mkdir(final.parent)
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
