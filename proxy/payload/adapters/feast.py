"""Feast feature server: ``POST /get-online-features``.

Request: ``{"features": ["view:feature", ...]`` (or ``"feature_service": NAME``), ``"entities": {"driver_id":
[1001, 1002]}``, ``"full_feature_names": bool, ...}``. Read as ``feast.request``: one row per entity row, the
entity columns holding their key values, then one column per feature reference whose cells are all
``MISSING`` (a reference carries no per-row value): value faults leave them alone, ``drop_feature`` removes a
reference from ``features``, ``rename_feature`` asks for another one, ``truncate_batch`` drops entity rows.

Response (Feast 0.67, column-oriented; the docs' row-per-entity example is stale)::

    {"metadata": {"feature_names": ["driver_id", "conv_rate", ...]},
     "results": [{"values": [...], "statuses": [...], "event_timestamps": [...]}, ...]}

``results[i]`` belongs to ``feature_names[i]`` and each list has one entry per entity row. Read as
``feast.response``: the table holds the features (``view__feature`` names with ``full_feature_names``), one
row per entity row; the entity key columns that lead the answer (every status PRESENT, every timestamp the
epoch, as Feast writes them) are the rows' keys, kept in ``FeastDetail`` and written back unchanged. Every
other field (``status``, ``metadata.feature_view_metadata``, unknown keys of a result) is kept.

Statuses and timestamps follow the values on write, so the answer stays one Feast could give: an unchanged
cell keeps its status and timestamp; a cell made null (or NaN, which Feast's JSON cannot carry) gets
``options.null_status`` (NULL_VALUE keeps the timestamp, NOT_FOUND takes the epoch, as Feast does for an
unknown entity); a cell given another value is PRESENT. Feast-specific faults (``proxy/payload/feast.py``)
set statuses, timestamps or the names written explicitly, in ``FeastDetail``'s overrides.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final

from ..table import (
    MISSING,
    FeatureTable,
    all_json,
    cells_equal,
    infer_dtype,
    origins,
    resolve_col_origin,
    resolve_row_origin,
)
from .base import (
    DEFAULT_OPTIONS,
    PREDICTIONS,
    REQUEST,
    RESPONSE,
    AdapterOptions,
    BaseAdapter,
    Parsed,
    Predictions,
    clone,
)

__all__ = [
    "EPOCH", "NOT_FOUND", "NULL_VALUE", "OUTSIDE_MAX_AGE", "PRESENT", "STATUSES", "FeastAdapter", "FeastDetail",
    "FeastRequestDetail", "age_timestamp", "format_timestamp", "parse_timestamp",
]

_PATH = re.compile(r"(?:^|/)get-online-features/?$")

PRESENT: Final = "PRESENT"
NULL_VALUE: Final = "NULL_VALUE"
NOT_FOUND: Final = "NOT_FOUND"
OUTSIDE_MAX_AGE: Final = "OUTSIDE_MAX_AGE"
# FieldStatus of Feast's serving proto, in its order (0 INVALID ... 4 OUTSIDE_MAX_AGE).
STATUSES: Final = ("INVALID", PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE)
# Feast's timestamp of an entity key column and of a value it did not find.
EPOCH: Final = "1970-01-01T00:00:00Z"

_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z")
_NS: Final = 1_000_000_000


class FeastRequestDetail:
    __slots__ = ("entities", "refs")

    def __init__(self, entities: list[str], refs: list[str] | None) -> None:
        self.entities = entities  # entity column names, in the request's order
        self.refs = refs  # the feature references (None: a feature_service request)

    def __repr__(self) -> str:
        return f"FeastRequestDetail({self.entities!r}, {self.refs!r})"


class FeastDetail:
    """What a response table leaves out: the entity key columns, the result objects as read, and what a
    Feast-specific fault sets explicitly for the table it writes with (each None: derived on write)."""

    __slots__ = ("feature_names", "key_results", "keys", "n_rows", "names", "results", "statuses", "timestamps")

    def __init__(self, keys: list[str], key_results: list[dict[str, Any]], names: list[str],
                 results: list[dict[str, Any]], n_rows: int) -> None:
        self.keys = keys
        self.key_results = key_results
        self.names = names  # the feature columns as read (the table's col_origin indexes these)
        self.results = results
        self.n_rows = n_rows
        # Per column of the table written, per row: a status or timestamp to write instead of the derived one
        # (None in a cell: derive it).
        self.statuses: list[list[str | None]] | None = None
        self.timestamps: list[list[str | None]] | None = None
        # metadata.feature_names to write instead of the keys and the table's names (misalign).
        self.feature_names: list[str] | None = None

    def copy(self) -> FeastDetail:
        """The same answer as read, without overrides (shared: nothing here is changed in place)."""
        return FeastDetail(self.keys, self.key_results, self.names, self.results, self.n_rows)

    def status(self, col: int, row: int) -> str:
        return str(self.results[col]["statuses"][row])

    def timestamp(self, col: int, row: int) -> str | None:
        stamps = self.results[col].get("event_timestamps")
        return stamps[row] if isinstance(stamps, list) else None

    def row_key(self, row: int) -> str:
        """The entity key of a row as one string (``driver_id=1001``), for per-entity memory."""
        return "&".join(f"{k}={r['values'][row]}" for k, r in zip(self.keys, self.key_results, strict=True))

    def __repr__(self) -> str:
        return f"FeastDetail(keys={self.keys!r}, names={self.names!r}, n_rows={self.n_rows!r})"


def parse_timestamp(ts: str) -> int | None:
    """An RFC 3339 UTC timestamp as Feast writes it, in integer nanoseconds since the epoch; None otherwise."""
    m = _TS.fullmatch(ts)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    frac = m.group(7) or ""
    days = _days_from_civil(year, month, day)
    return ((days * 24 + hour) * 60 + minute) * 60 * _NS + second * _NS + int(frac.ljust(9, "0") or "0")


def format_timestamp(ns: int) -> str:
    """Integer nanoseconds as Feast writes a timestamp: seconds, then 3, 6 or 9 fraction digits as needed."""
    seconds, nanos = divmod(ns, _NS)
    days, rest = divmod(seconds, 86400)
    year, month, day = _civil_from_days(days)
    base = f"{year:04d}-{month:02d}-{day:02d}T{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    if nanos == 0:
        return base + "Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{base}.{nanos // 1000:06d}Z"
    return f"{base}.{nanos:09d}Z"


def age_timestamp(ts: Any, seconds: float) -> Any:
    """``ts`` made ``seconds`` older (never before the epoch); anything that is not a timestamp as it was."""
    if not isinstance(ts, str):
        return ts
    ns = parse_timestamp(ts)
    if ns is None:
        return ts
    return format_timestamp(max(0, ns - round(seconds * _NS)))


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm: no datetime, no range)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def _is_null(v: Any) -> bool:
    return v is None or v is MISSING or (isinstance(v, float) and v != v)


def _result(raw: Any, n: int | None) -> int:
    """The row count of one result object; -1 when it is not one."""
    if not isinstance(raw, dict):
        return -1
    values, statuses = raw.get("values"), raw.get("statuses")
    if not isinstance(values, list) or not isinstance(statuses, list) or len(values) != len(statuses):
        return -1
    if n is not None and len(values) != n:
        return -1
    stamps = raw.get("event_timestamps", [])
    if not isinstance(stamps, list) or (stamps and len(stamps) != len(values)):
        return -1
    for s in statuses:
        if type(s) is not str:
            return -1
    if not all_json(values):
        return -1
    return len(values)


def _is_key(raw: dict[str, Any]) -> bool:
    stamps = raw.get("event_timestamps")
    if not isinstance(stamps, list) or not stamps:
        return False
    for s in raw["statuses"]:
        if s != PRESENT:
            return False
    for t in stamps:
        if t != EPOCH:
            return False
    for v in raw["values"]:
        if v is None or isinstance(v, (list, dict)):
            return False
    return True


class FeastAdapter(BaseAdapter):
    name: ClassVar[str] = "feast"
    HELP: ClassVar[str] = ("Feast feature server (/get-online-features): request entities and feature references; "
                           "the column-oriented answer's features, statuses and event timestamps.")
    PATH: ClassVar[re.Pattern[str] | None] = _PATH
    READS: ClassVar[frozenset[str]] = frozenset({REQUEST, RESPONSE, PREDICTIONS})

    def sniff(self, doc: Any) -> bool:
        return isinstance(doc, dict) and isinstance(doc.get("entities"), dict) and (
            isinstance(doc.get("features"), list) or isinstance(doc.get("feature_service"), str))

    # -- the request: entity rows and feature references
    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        if not self.sniff(doc):
            return None
        entities: dict[str, Any] = doc["entities"]
        names = list(entities)
        if not names:
            return None
        lengths = set()
        for name in names:
            col = entities[name]
            if not isinstance(name, str) or not isinstance(col, list) or not all_json(col):
                return None
            lengths.add(len(col))
        if len(lengths) != 1:
            return None
        n = lengths.pop()
        refs: list[str] | None = None
        if isinstance(doc.get("features"), list):
            refs = doc["features"]
            if not all(isinstance(r, str) for r in refs) or len(set(refs) | set(names)) != len(refs) + len(names):
                return None
        columns: list[list[Any]] = [list(entities[name]) for name in names]
        dtypes = [infer_dtype(c) for c in columns]
        for _ref in refs or ():
            columns.append([MISSING] * n)
            dtypes.append("mixed")
        all_names = names + list(refs or ())
        table = FeatureTable(all_names, columns, dtypes, True, origins(len(all_names)), origins(n))
        return Parsed(doc, table, "feast.request", FeastRequestDetail(names, None if refs is None else list(refs)))

    # -- the answer: features per entity row, with statuses and timestamps
    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        if not isinstance(doc, dict):
            return None
        meta, results = doc.get("metadata"), doc.get("results")
        if not isinstance(meta, dict) or not isinstance(results, list) or not results:
            return None
        names = meta.get("feature_names")
        if not isinstance(names, list) or len(names) != len(results) or len(set(names)) != len(names):
            return None
        for name in names:
            if type(name) is not str:
                return None
        n: int | None = None
        for raw in results:
            n = _result(raw, n)
            if n < 0:
                return None
        if not n:
            return None  # no entity rows: nothing to read or change
        k = 0
        while k < len(results) and _is_key(results[k]):
            k += 1
        features = list(names[k:])
        feature_results = list(results[k:])
        columns = [list(r["values"]) for r in feature_results]
        table = FeatureTable(features, columns, [infer_dtype(c) for c in columns], True,
                             origins(len(features)), origins(n))
        detail = FeastDetail(list(names[:k]), list(results[:k]), features, feature_results, n)
        return Parsed(doc, table, "feast.response", detail, RESPONSE)

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        if parsed.layout == "feast.request":
            return self._write_request(parsed, table)
        return self._write_response(parsed, table, options)

    def _write_request(self, parsed: Parsed, table: FeatureTable) -> Any:
        table.validate()
        detail: FeastRequestDetail = parsed.detail
        n_entities = len(detail.entities)
        cols = resolve_col_origin(table, detail.entities + list(detail.refs or ()))
        entities: dict[str, Any] = {}
        refs: list[str] = []
        for j, name in enumerate(table.names):
            o = cols[j]
            col = table.columns[j]
            is_ref = (o is not None and o >= n_entities) or (o is None and all(v is MISSING for v in col))
            if is_ref:
                refs.append(name)
            else:
                entities[name] = [None if v is MISSING or (isinstance(v, float) and v != v) else clone(v)
                                  for v in col]
        out: dict[str, Any] = {}
        for key, value in parsed.doc.items():
            if key == "entities":
                out[key] = entities
            elif key == "features" and detail.refs is not None:
                out[key] = refs
            else:
                out[key] = clone(value)
        return out

    def _write_response(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions) -> Any:
        table.validate()
        d: FeastDetail = parsed.detail
        rows = resolve_row_origin(table, d.n_rows)
        cols = resolve_col_origin(table, d.names)
        null_status = options.null_status
        results: list[dict[str, Any]] = [_key_result(raw, rows) for raw in d.key_results]
        template = d.results[0] if d.results else (d.key_results[0] if d.key_results else {})
        for j in range(len(table.names)):
            o = cols[j]
            src = d.results[o] if o is not None else None
            col = table.columns[j]
            forced_s = d.statuses[j] if d.statuses is not None else None
            forced_t = d.timestamps[j] if d.timestamps is not None else None
            src_values: list[Any] = src["values"] if src is not None else []
            src_statuses: list[Any] = src["statuses"] if src is not None else []
            raw_stamps = src.get("event_timestamps") if src is not None else None
            src_stamps: list[Any] = raw_stamps if isinstance(raw_stamps, list) and raw_stamps else []
            values: list[Any] = []
            statuses: list[Any] = []
            stamps: list[Any] = []
            for i in range(len(rows)):
                r = rows[i]
                v = col[i]
                if _is_null(v):
                    v = None
                if src is not None and r is not None:
                    old_t = src_stamps[r] if src_stamps else EPOCH
                    if cells_equal(v, src_values[r]):
                        s, t = src_statuses[r], old_t
                    elif v is None:
                        s, t = null_status, (EPOCH if null_status == NOT_FOUND else old_t)
                    else:
                        s, t = PRESENT, old_t
                else:
                    s, t = (null_status if v is None else PRESENT), EPOCH
                if forced_s is not None and forced_s[i] is not None:
                    s = forced_s[i]
                if forced_t is not None and forced_t[i] is not None:
                    t = forced_t[i]
                values.append(clone(v))
                statuses.append(s)
                stamps.append(t)
            keep_stamps = bool(src_stamps) or src is None or forced_t is not None
            results.append(_feature_result(src if src is not None else template, values, statuses,
                                           stamps if keep_stamps else None))
        names = d.feature_names if d.feature_names is not None else d.keys + list(table.names)
        out: dict[str, Any] = {}
        for key, value in parsed.doc.items():
            if key == "results":
                out[key] = results
            elif key == "metadata":
                meta = {k: clone(v) for k, v in value.items()}
                meta["feature_names"] = list(names)
                out[key] = meta
            else:
                out[key] = clone(value)
        return out

    def cell_statuses(self, parsed: Parsed) -> list[list[str]] | None:
        detail = parsed.detail
        if not isinstance(detail, FeastDetail):
            return None
        return [[str(s) for s in r["statuses"]] for r in detail.results]

    # -- Feast answers carry features, not predictions: the observer reads them as features
    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return None


def _key_result(raw: dict[str, Any], rows: list[int | None]) -> dict[str, Any]:
    """An entity key column for the rows kept (a new row has no key: null, NOT_FOUND)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("values", "statuses", "event_timestamps") and isinstance(value, list) and value:
            fill: Any = None if key == "values" else NOT_FOUND if key == "statuses" else EPOCH
            out[key] = [clone(value[r]) if r is not None else fill for r in rows]
        else:
            out[key] = clone(value)
    return out


def _feature_result(src: dict[str, Any], values: list[Any], statuses: list[Any],
                    stamps: list[Any] | None) -> dict[str, Any]:
    """A result object in ``src``'s key order, other keys kept."""
    out: dict[str, Any] = {}
    for key, value in src.items():
        if key == "values":
            out[key] = values
        elif key == "statuses":
            out[key] = statuses
        elif key == "event_timestamps":
            if stamps is not None:
                out[key] = stamps
        else:
            out[key] = clone(value)
    out.setdefault("values", values)
    out.setdefault("statuses", statuses)
    if stamps is not None:
        out.setdefault("event_timestamps", stamps)
    return out
