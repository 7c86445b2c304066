"""The real data clients, run with the data-clients venv's python by tests/datafeeds (this file imports pandas,
pyarrow, boto3 and s3fs, which the project's venv does not have). One process serves many calls.

Reads one JSON object per line on stdin, answers one per line on stdout: ``{"ok": ..., "seconds": s}`` or
``{"error": {"class", "message", "code"?, "attempts"?}, "seconds": s}``. The operations:

    {"op": "read", "url": U, "kind": "csv" | "jsonl" | "json" | "parquet"}   pandas read_* on an HTTP URL
        -> {"columns", "dtypes", "rows": n, "records": [first 50 as dicts], "nulls": {col: n}}
    {"op": "get", "url": U}                           requests.get: {"status", "headers", "sha256", "size", "body"?}
    {"op": "s3_get", "endpoint": E, "bucket", "key", "max_attempts"?}   boto3 get_object (path-style)
        -> {"sha256", "size", "etag", "last_modified", "body"?} or the ClientError with its code and attempts
    {"op": "s3_put", "endpoint", "bucket", "key", "data" | "file"}  (creates the bucket when missing)
    {"op": "s3fs_read", "endpoint", "path": "bucket/key", "kind"}   pandas over s3fs
    {"op": "step", "url": U, "out": FILE}            the pipeline step: read the CSV, total amount per city,
                                                     write the CSV; -> {"written": rows, "output": [...]}
    {"op": "write_dataset", "dir": D, "rows": [...]} data.csv, data.jsonl, data.json, data.parquet of rows
    {"op": "timed", "url": U, "how": "pandas" | "raw"}  wall time of read_csv, or of reading the body in 1 MiB
                                                     pieces with requests: {"seconds", "rows" | "size"}
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

SMALL = 64 * 1024  # bodies up to this size come back whole (base64)


def _frame_summary(df: Any) -> dict[str, Any]:
    def cell(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if hasattr(v, "item"):
            return cell(v.item())
        if v is None or isinstance(v, str | int | float | bool):
            return v
        return str(v)

    head = df.head(50)
    return {"columns": [str(c) for c in df.columns], "dtypes": {str(c): str(t) for c, t in df.dtypes.items()},
            "rows": len(df), "nulls": {str(c): int(n) for c, n in df.isna().sum().items()},
            "records": [{str(k): cell(v) for k, v in r.items()} for r in head.to_dict("records")]}


def _read(pd: Any, source: Any, kind: str, **kwargs: Any) -> Any:
    if kind == "csv":
        return pd.read_csv(source, **kwargs)
    if kind == "jsonl":
        return pd.read_json(source, lines=True, **kwargs)
    if kind == "json":
        return pd.read_json(source, **kwargs)
    return pd.read_parquet(source, **kwargs)


def _s3(endpoint: str, max_attempts: int = 3) -> Any:
    import boto3  # type: ignore[import-not-found]
    from botocore.config import Config  # type: ignore[import-not-found]

    config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "total_max_attempts": max_attempts},
                    connect_timeout=5, read_timeout=10)
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=config)


def _body_result(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if len(data) <= SMALL:
        out["body"] = base64.b64encode(data).decode()
    return out


def handle(req: dict[str, Any]) -> Any:
    op = req["op"]
    if op == "get":
        import requests

        r = requests.get(req["url"], timeout=req.get("timeout", 30))
        return {"status": r.status_code, "headers": {k.lower(): v for k, v in r.headers.items()},
                **_body_result(r.content)}
    if op == "read":
        import pandas as pd

        return _frame_summary(_read(pd, req["url"], req["kind"]))
    if op == "step":
        import pandas as pd

        df = pd.read_csv(req["url"])
        out = df.groupby("city", as_index=False)["amount"].sum().sort_values("city")
        out.to_csv(req["out"], index=False)
        return {"written": len(out), "output": _frame_summary(out)["records"]}
    if op == "s3_put":
        s3 = _s3(req["endpoint"])
        try:
            s3.head_bucket(Bucket=req["bucket"])
        except Exception:  # any miss: create it
            s3.create_bucket(Bucket=req["bucket"])
        data = Path(req["file"]).read_bytes() if "file" in req else req["data"].encode()
        r = s3.put_object(Bucket=req["bucket"], Key=req["key"], Body=data)
        return {"etag": r["ETag"]}
    if op == "s3_get":
        s3 = _s3(req["endpoint"], req.get("max_attempts", 3))
        r = s3.get_object(Bucket=req["bucket"], Key=req["key"])
        data = r["Body"].read()
        return {"etag": r["ETag"], "last_modified": r["LastModified"].isoformat(),
                "attempts": r["ResponseMetadata"].get("RetryAttempts", 0) + 1, **_body_result(data)}
    if op == "s3fs_read":
        import pandas as pd

        options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": req["endpoint"],
                                                                           "region_name": "us-east-1"},
                   "config_kwargs": {"s3": {"addressing_style": "path"}}, "skip_instance_cache": True,
                   "use_listings_cache": False}
        return _frame_summary(_read(pd, "s3://" + req["path"], req["kind"], storage_options=options))
    if op == "timed":
        import pandas as pd
        import requests

        t0 = time.perf_counter()
        if req["how"] == "pandas":
            n = len(pd.read_csv(req["url"]))
            return {"seconds": time.perf_counter() - t0, "rows": n}
        with requests.get(req["url"], stream=True, timeout=60) as r:
            r.raise_for_status()
            size = sum(len(piece) for piece in r.iter_content(1 << 20))
        return {"seconds": time.perf_counter() - t0, "size": size}
    if op == "write_dataset":
        import pandas as pd

        d = Path(req["dir"])
        d.mkdir(parents=True, exist_ok=True)
        df = pd.DataFrame(req["rows"])
        df.to_csv(d / "data.csv", index=False)
        df.to_json(d / "data.jsonl", orient="records", lines=True)
        df.to_json(d / "data.json", orient="records")
        df.to_parquet(d / "data.parquet", compression="snappy")
        return {"files": sorted(p.name for p in d.iterdir())}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.monotonic()
        try:
            out = {"ok": handle(req)}
        except Exception as exc:  # every failure is the answer the test asserts on
            err: dict[str, Any] = {"class": type(exc).__name__, "module": type(exc).__module__,
                                   "message": str(exc)[:500]}
            response = getattr(exc, "response", None)
            if isinstance(response, dict):  # botocore's ClientError
                err["code"] = response.get("Error", {}).get("Code")
                err["status"] = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                err["attempts"] = response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
            elif response is not None and hasattr(response, "status_code"):  # requests' HTTPError
                err["status"] = response.status_code
            elif isinstance(getattr(exc, "code", None), int):  # urllib's HTTPError (pandas on a URL)
                err["status"] = exc.code  # type: ignore[attr-defined]
            out = {"error": err}
        out["seconds"] = time.monotonic() - t0
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
