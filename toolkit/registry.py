"""The model registry: versioned, verified artifacts and movable aliases with their history.

A version is staged and renamed into `<artifacts>/<database-id>/<name>/v<version>/` inside the
transaction that inserts its row, so it exists completely or not at all; a loader checks the bytes'
sha256 and deserialises those same bytes. Alias moves are appended to `model_alias_history`, never
rewritten. A reference reads `fraud@prod`, `fraud:3` or `fraud` (the latest).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .clock import utcnow
from .datasets import _atomic_write_text, make_private, private_mkdir, sha256_file
from .errors import MlkitError
from .formats import json_safe
from .identity import database_id
from .locks import job_lock
from .schema import model_alias_history, model_aliases, model_versions

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_REGISTER_ATTEMPTS = 5


def default_changed_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class ModelVersion:
    name: str
    version: int
    family: str
    artifact_path: Path
    sha256: str
    metrics: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    input_example: list[dict] = field(default_factory=list)
    dataset_ref: str | None = None
    created_at: datetime | None = None
    aliases: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """`name:version`, the reference that never moves."""
        return f"{self.name}:{self.version}"

    def as_dict(self) -> dict[str, Any]:
        """The fields as JSON values, with the reference after the name and version."""
        document = json_safe(asdict(self))
        name, version = document.pop("name"), document.pop("version")
        return {"name": name, "version": version, "ref": self.ref, **document}


def _from_row(row: Any, aliases: list[str] | None = None) -> ModelVersion:
    return _from_mapping(row._mapping, aliases)


def _from_mapping(m: Any, aliases: list[str] | None = None) -> ModelVersion:
    return ModelVersion(
        name=m["name"],
        version=int(m["version"]),
        family=m["family"],
        artifact_path=Path(m["artifact_path"]),
        sha256=m["sha256"],
        metrics=m["metrics"] or {},
        params=m["params"] or {},
        features=list(m["features"] or []),
        input_example=list(m["input_example"] or []),
        dataset_ref=m["dataset_ref"],
        created_at=m["created_at"],
        aliases=sorted(aliases or []),
    )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise MlkitError(
            f"invalid model name {name!r}",
            hint="use up to 64 letters, digits, '_', '.' or '-', e.g. fraud",
        )


def _check_alias(alias: str) -> None:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise MlkitError(
            f"invalid alias {alias!r}",
            hint="an alias is a word of up to 32 letters, digits, '_' or '-', e.g. prod",
        )


# ---------------------------------------------------------------- registering


def register_model(
    engine: Engine,
    artifacts_dir: Path,
    *,
    name: str,
    family: str,
    write_artifact: Callable[[Path], None],
    filename: str,
    metrics: dict | None = None,
    params: dict | None = None,
    features: list[str] | None = None,
    input_example: list[dict] | None = None,
    dataset_ref: str | None = None,
) -> ModelVersion:
    """Write the artifact through `write_artifact(path)` and register it as the next version under
    `artifacts_dir`; never moves an alias, and a failure leaves no folder and no row."""
    _check_name(name)
    if not filename or Path(filename).name != filename or filename.startswith("."):
        raise MlkitError(f"invalid artifact file name {filename!r}", hint="e.g. model.ubj")
    if filename == "metadata.json":
        raise MlkitError("the artifact cannot be called metadata.json")
    folder = Path(database_id(engine)) / name  # relative to the artifacts root
    root = Path(artifacts_dir).expanduser() / folder
    staging = root / f".staging-{secrets.token_hex(6)}"
    metadata = {
        "name": name,
        "family": family,
        "filename": filename,
        "metrics": json_safe(metrics or {}),
        "params": json_safe(params or {}),
        "features": [str(f) for f in (features or [])],
        "input_example": json_safe(input_example or []),
        "dataset_ref": dataset_ref,
    }
    try:
        try:
            private_mkdir(staging)
        except OSError as exc:
            raise MlkitError(
                f"cannot create {staging}: {exc.strerror}",
                hint="check the artifacts directory (MLKIT_ARTIFACTS_DIR) and its permissions",
            ) from None
        artifact = staging / filename
        write_artifact(artifact)
        if not artifact.is_file() or artifact.stat().st_size == 0:
            raise MlkitError(f"the model writer produced no {filename} (or an empty one)")
        make_private(artifact)
        metadata["sha256"] = sha256_file(artifact)
        metadata["size_bytes"] = artifact.stat().st_size
        for attempt in range(_REGISTER_ATTEMPTS):
            try:
                return _commit_version(engine, root, folder, staging, metadata)
            except IntegrityError:
                # Another process took the same version number between our read and insert.
                if attempt == _REGISTER_ATTEMPTS - 1:
                    raise
                log.debug("version of %s taken concurrently; retrying", name)
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _commit_version(
    engine: Engine, root: Path, folder: Path, staging: Path, metadata: dict
) -> ModelVersion:
    name = metadata["name"]
    created_at = utcnow()
    final: Path | None = None
    try:
        with job_lock(engine, "register", name), engine.begin() as conn:
            current = conn.execute(
                sa.select(sa.func.max(model_versions.c.version)).where(
                    model_versions.c.name == name
                )
            ).scalar()
            version = int(current or 0) + 1
            final = root / f"v{version}"
            row = {
                key: metadata[key]
                for key in (
                    "family",
                    "sha256",
                    "metrics",
                    "params",
                    "features",
                    "input_example",
                    "dataset_ref",
                )
            }
            row |= {
                "name": name,
                "version": version,
                "created_at": created_at,
                "artifact_path": (folder / final.name / metadata["filename"]).as_posix(),
            }
            conn.execute(model_versions.insert().values(**row))
            document = {**metadata, "version": version, "created_at": created_at.isoformat()}
            _atomic_write_text(
                staging / "metadata.json", json.dumps(document, indent=2, sort_keys=True) + "\n"
            )
            if final.exists():
                # No row names this folder (the version is new): a leftover of this
                # database before it was reset. Keep it, out of the way.
                orphan = root / f".orphan-v{version}-{secrets.token_hex(4)}"
                log.warning("moving unregistered %s aside to %s", final, orphan)
                os.replace(final, orphan)
            os.replace(staging, final)
    except BaseException:
        if final is not None and final.exists() and not staging.exists():
            # The rename happened but the commit did not: put the folder back for cleanup.
            os.replace(final, staging)
        raise
    return _from_mapping(row)


# ---------------------------------------------------------------- reading artifacts

# How a file's first bytes name its format, and whether loading it could run code.
_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


def artifact_file(mv: ModelVersion, artifacts_dir: Path) -> Path:
    """Where the artifact of `mv` lives, after symlinks, refused unless inside the artifacts root,
    so writing the database is not enough to make this host read a file of one's choosing.

    Rows hold a path relative to the root (`<name>/v<n>/<file>` in rows older than identities) or,
    older still, an absolute one; the bytes must match the row's sha256 either way."""
    root = Path(artifacts_dir).expanduser().resolve()
    path = (root / Path(mv.artifact_path).expanduser()).resolve()
    if not path.is_relative_to(root):
        raise MlkitError(
            f"artifact of {mv.ref} is outside the artifacts directory: {mv.artifact_path} "
            f"resolves to {path}, not under {root}",
            hint=f"{mv.ref} is not loaded; train a new version, or check the model_versions "
            "row and MLKIT_ARTIFACTS_DIR (paths.artifacts)",
        )
    return path


def read_artifact(mv: ModelVersion, artifacts_dir: Path) -> bytes:
    """The artifact's bytes, read once and returned only when their sha256 matches the
    registry: a loader deserialises these bytes and never reopens the path, so a file
    swapped in after the check is never read."""
    path = artifact_file(mv, artifacts_dir)
    hint = (
        f"restore the file from a backup or train a new version; {mv.ref} is not loaded "
        "while it does not match"
    )
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise MlkitError(
            f"artifact of {mv.ref} is missing: {path} does not exist", hint=hint
        ) from None
    except OSError as exc:
        raise MlkitError(
            f"cannot read the artifact of {mv.ref} at {path}: {exc.strerror}", hint=hint
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != mv.sha256:
        raise MlkitError(
            f"artifact of {mv.ref} at {path} fails its sha256 check (registered "
            f"{mv.sha256[:12]}…, file {actual[:12]}…, {len(data)} bytes): truncated or tampered",
            hint=hint,
        )
    return data


def artifact_format(data: bytes, filename: str) -> str:
    """What an artifact's bytes are, and `pickle (can run code)` for a pickle (joblib's
    included), the one format whose loading executes what the file says."""
    name = filename.lower()
    if data[:1] == b"\x80" or name.endswith(_PICKLE_SUFFIXES):
        return "pickle (can run code)"
    if data[:4] == b"CBM1":
        return "catboost cbm"
    if data[:4] == b"PK\x03\x04" and name.endswith(".npz"):
        return "npz (plain arrays)"
    if name.endswith(".ubj"):
        return "xgboost ubj"
    if name.endswith(".json"):
        return "json"
    return "unknown"


def inspect_artifact(mv: ModelVersion, artifacts_dir: Path) -> dict[str, str]:
    """`check` (`ok` or why the artifact is refused) and `format` of a version's artifact,
    for `models show`; nothing is deserialised."""
    try:
        data = read_artifact(mv, artifacts_dir)
    except MlkitError as exc:
        return {"check": exc.message, "format": artifact_format(b"", mv.artifact_path.name)}
    return {"check": "ok", "format": artifact_format(data, mv.artifact_path.name)}


# ---------------------------------------------------------------- reading


def _aliases_by_version(conn: sa.Connection, names: list[str] | None) -> dict:
    query = sa.select(model_aliases.c.name, model_aliases.c.version, model_aliases.c.alias)
    if names is not None:
        query = query.where(model_aliases.c.name.in_(names))
    out: dict[tuple[str, int], list[str]] = {}
    for name, version, alias in conn.execute(query):
        out.setdefault((name, int(version)), []).append(alias)
    return out


def list_versions(engine: Engine, name: str | None = None) -> list[ModelVersion]:
    """Every registered version (of one model, or all), by name then version."""
    query = sa.select(model_versions).order_by(model_versions.c.name, model_versions.c.version)
    if name is not None:
        query = query.where(model_versions.c.name == name)
    with engine.connect() as conn:
        rows = conn.execute(query).fetchall()
        aliases = _aliases_by_version(conn, None if name is None else [name])
    return [_from_row(r, aliases.get((r.name, int(r.version)))) for r in rows]


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """`fraud@prod` → (fraud, prod, None); `fraud:3` → (fraud, None, 3); `fraud` → latest."""
    text = (ref or "").strip()
    hint = "write NAME@ALIAS (fraud@prod), NAME:VERSION (fraud:3) or NAME (the latest)"
    if "@" in text:
        name, _, alias = text.partition("@")
        if not name or not alias:
            raise MlkitError(f"invalid model reference {ref!r}", hint=hint)
        return name, alias, None
    if ":" in text:
        name, _, number = text.partition(":")
        number = number[1:] if number[:1] in ("v", "V") else number
        # ASCII digits only (int() refuses '²'), and a version must fit the BIGINT column.
        if not name or not (number.isascii() and number.isdigit()) or int(number) >= 2**63:
            raise MlkitError(f"invalid model reference {ref!r}", hint=hint)
        return name, None, int(number)
    if not text:
        raise MlkitError("empty model reference", hint=hint)
    return text, None, None


def _describe_existing(conn: sa.Connection) -> str:
    """`fraud: v1-v3 (prod→v2, candidate→v3); pricing: v1` — what a reference could name."""
    rows = conn.execute(
        sa.select(
            model_versions.c.name,
            sa.func.min(model_versions.c.version),
            sa.func.max(model_versions.c.version),
            sa.func.count(),
        ).group_by(model_versions.c.name)
    ).fetchall()
    if not rows:
        return "no model is registered yet"
    aliases: dict[str, list[str]] = {}
    for name, alias, version in conn.execute(
        sa.select(model_aliases.c.name, model_aliases.c.alias, model_aliases.c.version).order_by(
            model_aliases.c.name, model_aliases.c.alias
        )
    ):
        aliases.setdefault(name, []).append(f"@{alias}→v{version}")
    parts = []
    for name, low, high, count in sorted(rows):
        versions = f"v{low}" if low == high else f"v{low}..v{high}"
        if count != high - low + 1:
            versions += f" ({count} versions)"
        extra = f" [{', '.join(aliases[name])}]" if name in aliases else ""
        parts.append(f"{name} {versions}{extra}")
    return "registered: " + "; ".join(parts)


def resolve(engine: Engine, ref: str) -> ModelVersion:
    """The version a reference names; an unknown one is an error that lists what exists."""
    name, alias, version = parse_ref(ref)
    with engine.connect() as conn:
        if alias is not None:
            version = conn.execute(
                sa.select(model_aliases.c.version).where(
                    model_aliases.c.name == name, model_aliases.c.alias == alias
                )
            ).scalar()
        elif version is None:
            version = conn.execute(
                sa.select(sa.func.max(model_versions.c.version)).where(
                    model_versions.c.name == name
                )
            ).scalar()
        row = None
        if version is not None:
            row = conn.execute(
                sa.select(model_versions).where(
                    model_versions.c.name == name, model_versions.c.version == int(version)
                )
            ).first()
        if row is None:
            what = (
                f"alias {alias!r} of {name!r}"
                if alias is not None
                else f"version {version} of {name!r}"
                if version is not None
                else f"model {name!r}"
            )
            raise MlkitError(
                f"unknown model reference {ref!r}: no {what}; {_describe_existing(conn)}",
                hint="see `mlkit models list`; train one with `mlkit train <family>`",
            )
        aliases = _aliases_by_version(conn, [name]).get((name, int(row.version)))
    return _from_row(row, aliases)


# ---------------------------------------------------------------- aliases


def _alias_version(conn: sa.Connection, name: str, alias: str) -> int | None:
    value = conn.execute(
        sa.select(model_aliases.c.version).where(
            model_aliases.c.name == name, model_aliases.c.alias == alias
        )
    ).scalar()
    return None if value is None else int(value)


def _move_alias(
    conn: sa.Connection,
    name: str,
    alias: str,
    from_version: int | None,
    to_version: int,
    *,
    action: str,
    changed_by: str | None,
    reason: str | None,
) -> None:
    now = utcnow()
    if from_version is None:
        conn.execute(
            model_aliases.insert().values(
                name=name, alias=alias, version=to_version, updated_at=now
            )
        )
    else:
        conn.execute(
            model_aliases.update()
            .where(model_aliases.c.name == name, model_aliases.c.alias == alias)
            .values(version=to_version, updated_at=now)
        )
    conn.execute(
        model_alias_history.insert().values(
            name=name,
            alias=alias,
            from_version=from_version,
            to_version=to_version,
            action=action,
            changed_by=(changed_by or default_changed_by())[:128],
            reason=reason[:255] if reason else None,
            changed_at=now,
        )
    )


def promote(
    engine: Engine,
    name: str,
    version: int,
    alias: str,
    *,
    changed_by: str | None = None,
    reason: str | None = None,
    validate: Callable[[ModelVersion], list[str]] | None = None,
) -> ModelVersion:
    """Point `name@alias` at `version` after `validate(mv)` found nothing wrong; failing checks move
    nothing, and the version the alias already names adds no history row."""
    _check_alias(alias)
    mv = resolve(engine, f"{name}:{int(version)}")
    if validate is not None:
        failures = [str(f) for f in (validate(mv) or [])]
        if failures:
            raise MlkitError(
                f"{mv.ref} failed validation, {name}@{alias} not moved: " + "; ".join(failures),
                hint=f"see `mlkit validate model {mv.ref}`",
            )
    with job_lock(engine, "alias", name), engine.begin() as conn:
        current = _alias_version(conn, name, alias)
        if current != mv.version:
            _move_alias(
                conn,
                name,
                alias,
                current,
                mv.version,
                action="promote",
                changed_by=changed_by,
                reason=reason,
            )
    return resolve(engine, mv.ref)


def rollback(
    engine: Engine,
    name: str,
    alias: str,
    *,
    changed_by: str | None = None,
    reason: str | None = None,
) -> ModelVersion:
    """Move `name@alias` back to the version it named before its latest move, so a second rollback
    undoes the first."""
    _check_alias(alias)
    with job_lock(engine, "alias", name), engine.begin() as conn:
        current = _alias_version(conn, name, alias)
        last = conn.execute(
            sa.select(model_alias_history)
            .where(model_alias_history.c.name == name, model_alias_history.c.alias == alias)
            .order_by(model_alias_history.c.id.desc())
            .limit(1)
        ).first()
        if current is None or last is None:
            resolve(engine, name)  # an unknown model: the error lists what exists
            raise MlkitError(
                f"{name}@{alias} does not exist, nothing to roll back",
                hint=f"promote a version first: `mlkit models promote {name} N --alias {alias}`",
            )
        if last.from_version is None:
            raise MlkitError(
                f"{name}@{alias} has pointed at v{current} since it was created, "
                "nothing to roll back to",
                hint=f"see `mlkit models history {name}`",
            )
        target = int(last.from_version)
        _move_alias(
            conn,
            name,
            alias,
            current,
            target,
            action="rollback",
            changed_by=changed_by,
            reason=reason or f"rollback of the move to v{last.to_version}",
        )
    return resolve(engine, f"{name}:{target}")


def history(engine: Engine, name: str) -> list[dict[str, Any]]:
    """Every alias move of a model, oldest first (append-only). Timestamps are naive UTC
    datetimes. An unknown model is an error listing what exists."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(model_alias_history)
            .where(model_alias_history.c.name == name)
            .order_by(model_alias_history.c.id)
        ).fetchall()
    if not rows:
        resolve(engine, name)  # raises for an unknown model
    return [dict(r._mapping) for r in rows]


# ---------------------------------------------------------------- what `mlkit models` does


@dataclass(frozen=True)
class VersionReport:
    """One version with the state of its artifact, for `models show`."""

    model: ModelVersion
    check: str
    format: str
    # The model's serving version and, when this one does not serve, why (families.status).
    serving: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.model.as_dict(),
            "artifact_check": self.check,
            "format": self.format,
            "serving": self.serving,
        }


def describe_version(engine: Engine, ref: str, artifacts_dir: Path) -> VersionReport:
    """The version `ref` names, its artifact checked but not deserialised, and which version
    of its model serves (with why this one does not, from its gate's verdict)."""
    from .families import SERVING, why_not_serving

    mv = resolve(engine, ref)
    artifact = inspect_artifact(mv, artifacts_dir)
    serving = alias_target(engine, mv.name, SERVING)
    why = why_not_serving(mv)
    document = {
        "alias": SERVING,
        "version": serving,
        "this": serving == mv.version,
        "gate": why["gate"],
        "reasons": [] if serving == mv.version else why["reasons"],
    }
    return VersionReport(mv, artifact["check"], artifact["format"], document)


@dataclass(frozen=True)
class AliasMove:
    """Where an alias pointed before a promote or rollback, and the version it names now."""

    name: str
    alias: str
    from_version: int | None
    model: ModelVersion

    @property
    def moved(self) -> bool:
        return self.from_version != self.model.version

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.model.version,
            "moved": self.moved,
            "model": self.model.as_dict(),
        }


def alias_target(engine: Engine, name: str, alias: str) -> int | None:
    """The version `name@alias` points at, or None when it is unset (or the model unknown):
    one query (`resolve` reads the whole version and, for its error, what exists)."""
    a, v = model_aliases, model_versions
    query = (
        sa.select(v.c.version)
        .select_from(a.join(v, (v.c.name == a.c.name) & (v.c.version == a.c.version)))
        .where(a.c.name == name, a.c.alias == alias)
    )
    with engine.connect() as conn:
        version = conn.execute(query).scalar()
    return None if version is None else int(version)


def rollback_alias(
    engine: Engine, name: str, alias: str, *, reason: str | None = None
) -> AliasMove:
    """`mlkit models rollback`: `rollback`, reported as the move it made."""
    before = alias_target(engine, name, alias)
    return AliasMove(name, alias, before, rollback(engine, name, alias, reason=reason))
