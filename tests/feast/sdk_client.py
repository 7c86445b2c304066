"""Feast's own SDK as a client, run with the Feast venv's python by tests/feast (this file imports feast, which
the project's venv does not have). One process serves many calls: importing feast takes ~10 s on 2 cores.

Reads one JSON object per line on stdin, answers one per line on stdout:

    {"repo": DIR, "features": [...] | "feature_service": NAME, "entity_rows": [{...}, ...],
     "full_feature_names": false}
    -> {"ok": to_dict(), "statuses": {name: [FieldStatus name, ...]}, "seconds": s}
    -> {"error": {"module": ..., "class": ..., "message": ...}, "seconds": s}

DIR holds a feature_store.yaml whose online_store is ``{type: remote, path: http://127.0.0.1:PORT}``: the SDK
then asks that feature server (or mlchaos in front of it) over HTTP.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main() -> None:
    # Only the Feast venv has these (this file runs there, never in the project's venv).
    from feast import FeatureStore  # type: ignore[import-not-found]
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus  # type: ignore[import-not-found]

    stores: dict[str, Any] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        store = stores.get(req["repo"])
        if store is None:
            store = stores[req["repo"]] = FeatureStore(repo_path=req["repo"])
        features: Any = req.get("features")
        if features is None:
            features = store.get_feature_service(req["feature_service"])
        t0 = time.monotonic()
        try:
            resp = store.get_online_features(features=features, entity_rows=req["entity_rows"],
                                             full_feature_names=req.get("full_feature_names", False))
            names = list(resp.proto.metadata.feature_names.val)
            # Not strict: a misaligned answer has fewer names than results, and to_dict() zips them as here.
            statuses = {name: [FieldStatus.Name(s) for s in vector.statuses]
                        for name, vector in zip(names, resp.proto.results, strict=False)}
            out: dict[str, Any] = {"ok": resp.to_dict(), "statuses": statuses}
        except Exception as e:  # what the application would see: reported, not raised
            out = {"error": {"module": type(e).__module__, "class": type(e).__name__, "message": str(e)[:500]}}
        out["seconds"] = time.monotonic() - t0
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
