"""Bounded samples of the tables each cohort was served, per fault, for a data validation suite.

An experiment with ``samples.dir`` set gets a ``SampleWriter``. The data plane hands it a copy of each chaos
and control response body of 2xx (``submit``: an append to a bounded deque, or a count when it is full); the
bookkeeping task drains it (``drain``), reading each body as a table in a worker thread and writing it as one
file under::

    DIR/EXPERIMENT/control/00001.jsonl
    DIR/EXPERIMENT/chaos/FAULT/00001.jsonl     # FAULT: the faults applied, joined by "+"

until a (cohort, fault) has ``max_files`` files or ``max_rows`` rows (then its responses are no longer copied:
``open`` tells the data plane). Experiments without samples cost the data plane one ``is None`` test per
exchange and per body chunk. The copy is what the client got where a fault rewrote the whole answer (response
hooks); where a fault changes it chunk by chunk (stream hooks: corrupt_artifact, the LLM stream faults) it is the
upstream's body.

A body is read as the client that asked for it would read it: by the path's extension (``.csv``, ``.tsv``,
``.jsonl``/``.ndjson``, ``.json``, ``.parquet``), else by its Content-Type, else by a sniff of the bytes. So
a CSV served as JSON Lines under ``/data.csv`` becomes the one odd column pandas' ``read_csv`` would make of
it, which is what a validation suite should see. CSV cells become numbers where they parse as numbers, as
pandas does; an empty cell is null. Parquet needs pyarrow (``mlchaos[data]``); without it such bodies are
counted as unreadable.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import math
from collections import deque
from pathlib import Path
from typing import Any

from ..cohort import CHAOS, CONTROL

__all__ = ["MAX_QUEUE", "SampleWriter", "read_rows", "write_rows"]

log = logging.getLogger("mlchaos")
# Bodies waiting to be written; past this, copies are dropped (and counted) rather than queued. Each is at
# most limits.inspect_body_bytes, so the queue holds at most MAX_QUEUE of those.
MAX_QUEUE = 64
# Bodies read and written per drain: a drain runs in a worker thread and yields to the loop between batches.
DRAIN_BATCH = 8
Row = dict[str, Any]


def _number(cell: str) -> Any:
    if cell == "":
        return None
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        f = float(cell)
    except ValueError:
        return cell
    return None if math.isnan(f) else f


def _csv_rows(text: str, delimiter: str, limit: int) -> list[Row]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return []
    rows: list[Row] = []
    for record in reader:
        if len(rows) >= limit:
            break
        if not record:
            continue
        rows.append({name: _number(record[i]) if i < len(record) else None for i, name in enumerate(header)})
    return rows


def _json_rows(doc: Any, limit: int) -> list[Row] | None:
    if isinstance(doc, dict):
        # {"rows"|"data"|"records": [...]}, or one record
        for key in ("rows", "data", "records", "items"):
            if isinstance(doc.get(key), list):
                return _json_rows(doc[key], limit)
        return [doc]
    if isinstance(doc, list):
        return [r if isinstance(r, dict) else {"value": r} for r in doc[:limit]]
    return None


def _jsonl_rows(text: str, limit: int) -> list[Row]:
    rows: list[Row] = []
    for line in text.splitlines():
        if len(rows) >= limit:
            break
        if line.strip():
            doc = json.loads(line)
            rows.append(doc if isinstance(doc, dict) else {"value": doc})
    return rows


def _parquet_rows(body: bytes, limit: int) -> list[Row] | None:
    try:
        import pyarrow.parquet as pq  # the optional extra mlchaos[data]
    except ImportError:
        return None
    rows: list[Row] = pq.read_table(io.BytesIO(body)).slice(0, limit).to_pylist()
    return rows


def _kind(path: str, content_type: str, body: bytes) -> str:
    name = path.rpartition("/")[2].lower()
    for ext, kind in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".ndjson", "jsonl"),
                      (".json", "json"), (".parquet", "parquet")):
        if name.endswith(ext):
            return kind
    ct = content_type.lower()
    for marker, kind in (("csv", "csv"), ("tab-separated", "tsv"), ("ndjson", "jsonl"), ("jsonl", "jsonl"),
                         ("json", "json"), ("parquet", "parquet")):
        if marker in ct:
            return kind
    if body.startswith(b"PAR1"):
        return "parquet"
    head = body.lstrip()[:1]
    if head == b"[":
        return "json"
    if head == b"{":
        return "jsonl" if b"\n{" in body.strip() else "json"
    return "csv"


def read_rows(path: str, content_type: str, body: bytes, limit: int) -> list[Row] | None:
    """At most ``limit`` rows of ``body`` as the client of ``path`` would read them; None when unreadable."""
    kind = _kind(path, content_type, body)
    if kind == "parquet":
        return _parquet_rows(body, limit)
    try:
        text = body.decode("utf-8-sig")
        if kind in ("csv", "tsv"):
            return _csv_rows(text, "\t" if kind == "tsv" else ",", limit)
        if kind == "jsonl":
            return _jsonl_rows(text, limit)
        return _json_rows(json.loads(text), limit)
    except (ValueError, csv.Error):
        return None


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)  # dates, decimals, nested values of Parquet: their text


def write_rows(file: Path, rows: list[Row], fmt: str) -> None:
    """``rows`` to ``file`` as JSON Lines or CSV (the union of the rows' columns, in first-seen order)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(file.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as out:
        if fmt == "csv":
            columns: dict[str, None] = {}
            for row in rows:
                columns.update(dict.fromkeys(row))
            writer = csv.DictWriter(out, fieldnames=list(columns), restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if (c := _cell(v)) is None else c for k, v in row.items()})
        else:
            for row in rows:
                out.write(json.dumps({k: _cell(v) for k, v in row.items()}) + "\n")
    tmp.replace(file)  # a reader never sees half a file


class SampleWriter:
    """One experiment's samples: the data plane's queue and the writer's bounds."""

    def __init__(self, experiment: str, directory: str, max_rows: int, max_files: int, fmt: str,
                 fault_types: tuple[str, ...]) -> None:
        self.root = Path(directory) / experiment
        self.max_rows = max_rows
        self.max_files = max_files
        self.format = fmt
        self.queue: deque[tuple[int, tuple[str, ...], str, str, bytes]] = deque()
        # Per cohort: whether any of its (cohort, fault) keys still takes samples; read by the data plane.
        self.open = [True, True]
        self.files: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        # The chaos keys that fill up: each fault alone (a request several faults drew has a key of its own,
        # bounded as every key is, but the cohort does not wait for it).
        self.chaos_keys = set(fault_types)
        self.dropped = 0
        self.unreadable = 0
        self.written = 0

    # -- the data plane's side: O(1)
    def submit(self, cohort: int, applied: list[str] | None, path: str, content_type: str,
               chunks: list[bytes]) -> None:
        if len(self.queue) >= MAX_QUEUE:
            self.dropped += 1
            return
        self.queue.append((cohort, tuple(applied) if applied else (), path, content_type, b"".join(chunks)))

    # -- the background task's side
    @staticmethod
    def key(cohort: int, applied: tuple[str, ...]) -> str:
        if cohort == CONTROL:
            return "control"
        return "chaos/" + "+".join(dict.fromkeys(applied))

    def _write_one(self, item: tuple[int, tuple[str, ...], str, str, bytes]) -> None:
        cohort, applied, path, content_type, body = item
        if cohort != CONTROL and not applied:
            return  # a chaos request no fault drew (probability below 1): its table is no fault's
        key = self.key(cohort, applied)
        files, rows_so_far = self.files.get(key, 0), self.rows.get(key, 0)
        if files >= self.max_files or rows_so_far >= self.max_rows:
            return
        rows = read_rows(path, content_type, body, self.max_rows - rows_so_far)
        if rows is None:
            self.unreadable += 1
            return
        write_rows(self.root / key / f"{files + 1:05d}.{self.format}", rows, self.format)
        self.files[key] = files + 1
        self.rows[key] = rows_so_far + len(rows)
        self.written += 1

    def _full(self, key: str) -> bool:
        return self.files.get(key, 0) >= self.max_files or self.rows.get(key, 0) >= self.max_rows

    def write_batch(self, items: list[tuple[int, tuple[str, ...], str, str, bytes]]) -> None:
        """Read and write ``items`` (in a worker thread: file I/O and parsing never run on the loop)."""
        for item in items:
            try:
                self._write_one(item)
            except (OSError, ValueError):
                self.unreadable += 1
                log.exception("writing a sample under %s failed", self.root)

    async def drain(self) -> int:
        """Write what is queued, a batch at a time in a worker thread; returns how many bodies were taken."""
        done = 0
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(DRAIN_BATCH, len(self.queue)))]
            await asyncio.to_thread(self.write_batch, batch)
            done += len(batch)
        self.open[CONTROL] = not self._full("control")
        self.open[CHAOS] = not all(self._full("chaos/" + k) for k in self.chaos_keys)
        return done

    def verdicts(self) -> dict[str, Any] | None:
        """What ``mlchaos expectations`` last wrote beside these samples (expectations.json), if it ran."""
        try:
            found: dict[str, Any] = json.loads((self.root / "expectations.json").read_text())
        except (OSError, ValueError):
            return None
        return found

    def report(self) -> dict[str, Any]:
        return {"dir": str(self.root), "files": dict(self.files), "rows": dict(self.rows), "dropped": self.dropped,
                "unreadable": self.unreadable}
