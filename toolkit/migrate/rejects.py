"""The reject file: rows the target cannot hold, set aside with `--on-error skip`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..formats import json_safe


class RejectLog:
    """Rows the target cannot hold, one JSON line each. Lines are written before their
    batch commits, so a crash may repeat a line; readers keep one per key."""

    def __init__(self, path: Path):
        self.path = path
        self.written = False
        self._entries: dict[str, list[dict]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self._entries.setdefault(entry["table"], []).append(entry)
            self.written = bool(self._entries)

    def clear(self, table: str) -> None:
        if self._entries.pop(table, None) is not None:
            self._rewrite()

    def _rewrite(self) -> None:
        lines = [json.dumps(e) for entries in self._entries.values() for e in entries]
        self.path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def add(self, table: str, entries: list[dict]) -> None:
        if not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(json.dumps(entry) + "\n")
            handle.flush()
        self._entries.setdefault(table, []).extend(entries)
        self.written = True

    def _unique(self, table: str) -> list[dict]:
        seen: set[str] = set()
        out = []
        for entry in self._entries.get(table, []):
            if entry.get("key") is not None:
                marker = json.dumps(entry["key"])
                if marker in seen:
                    continue
                seen.add(marker)
            out.append(entry)
        return out

    def count(self, table: str) -> int:
        return len(self._unique(table))

    def hashes(self, table: str) -> Counter:
        return Counter(e["raw_hash"] for e in self._unique(table))


def reject_entry(
    table: str, columns: list[str], row: Any, key: list[Any] | None, reason: str, raw_hash: int
) -> dict:
    """One line of the reject file: the row as the source stored it, its key and the reason."""
    return {
        "table": table,
        "key": None if key is None else [json_safe(v, exact=True) for v in key],
        "reason": reason,
        "row": {n: json_safe(v, exact=True) for n, v in zip(columns, row, strict=True)},
        "raw_hash": raw_hash,
    }
