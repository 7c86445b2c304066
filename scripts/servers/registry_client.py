"""MLflow's own client against a model registry, run with the MLflow venv's python (not the project's).

    python scripts/servers/registry_client.py register NAME     train two versions on made-up data and register them
    python scripts/servers/registry_client.py load URI          mlflow.pyfunc.load_model(URI); predict PROBE (and WRONG)
    python scripts/servers/registry_client.py lookup NAME ALIAS MlflowClient's answers about the alias and the model

MLFLOW_TRACKING_URI says which registry (direct, or mlchaos in front of it). Each command prints one JSON object
on its last line of stdout; a failure prints {"error": type, "message": ...} and exits 3, so the tests can tell
what MLflow's client did.

The data: 200 rows of two features ``a``, ``b`` drawn from a seeded generator. Version 1 is fitted on the label
``a + b > 0`` and registered without a signature; version 2 on the opposite label, with a signature naming
``a`` and ``b``. Both are fitted on plain arrays (no feature names inside the estimator), so only the signature
decides whether a frame with a wrong column is refused. The alias ``champion`` points at version 2. The
estimators are pickled (cloudpickle): a corrupted artifact then fails where a pickle fails.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import numpy as np
import pandas as pd

ALIAS = "champion"
# Two rows with a + b far from 0: version 1 predicts [1, 0], version 2 [0, 1].
PROBE = {"a": [2.0, -2.0], "b": [1.0, -1.5]}
WRONG = {"a": [2.0, -2.0], "not_b": [1.0, -1.5]}


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(17)
    return pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})


def register(name: str) -> dict[str, Any]:
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    x = _data()
    positive = (x["a"] + x["b"] > 0).astype(int)
    versions = []
    for v, (label, signed) in enumerate(((positive, False), (1 - positive, True)), start=1):
        clf = LogisticRegression(random_state=0).fit(x.to_numpy(), label.to_numpy())
        signature = infer_signature(x, clf.predict(x.to_numpy())) if signed else None
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                clf, name="model", signature=signature, registered_model_name=name,
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                pip_requirements=["scikit-learn"],
            )
        versions.append({"version": str(info.registered_model_version), "run_id": info.run_id,
                         "model_id": info.model_id})
        assert str(info.registered_model_version) == str(v), info.registered_model_version
    client = MlflowClient()
    client.set_registered_model_alias(name, ALIAS, "2")
    client.update_model_version(name, "2", description="the champion")
    client.set_model_version_tag(name, "2", "validated", "true")
    return {"versions": versions}


def load(uri: str) -> dict[str, Any]:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(uri)
    meta = model.metadata
    out: dict[str, Any] = {
        "predictions": [int(p) for p in model.predict(pd.DataFrame(PROBE))],
        "run_id": meta.run_id,
        "model_id": getattr(meta, "model_id", None),
        "has_signature": meta.signature is not None,
    }
    try:
        out["wrong_column"] = [int(p) for p in model.predict(pd.DataFrame(WRONG))]
    except Exception as e:  # what MLflow's schema enforcement says about a frame without column b
        out["wrong_column"] = {"error": type(e).__name__, "message": str(e)[:300]}
    return out


def lookup(name: str, alias: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient()
    mv = client.get_model_version_by_alias(name, alias)
    rm = client.get_registered_model(name)
    latest = client.get_latest_versions(name)
    again = client.get_model_version(name, mv.version)
    return {
        "alias": {"version": mv.version, "run_id": mv.run_id, "source": mv.source, "aliases": list(mv.aliases),
                  "description": mv.description, "tags": dict(mv.tags)},
        "registered": {"aliases": dict(rm.aliases), "latest": [v.version for v in rm.latest_versions],
                       "description": rm.description, "tags": dict(rm.tags)},
        "latest": [v.version for v in latest],
        "get": {"version": again.version, "run_id": again.run_id, "source": again.source,
                "aliases": list(again.aliases)},
        "download_uri": client.get_model_version_download_uri(name, mv.version),
    }


def main() -> None:
    command, *args = sys.argv[1:]
    try:
        if command == "register":
            out = register(*args)
        elif command == "load":
            out = load(*args)
        elif command == "lookup":
            out = lookup(*args)
        else:
            raise SystemExit(f"unknown command {command!r}")
    except Exception as e:
        traceback.print_exc()
        print(json.dumps({"error": type(e).__name__, "message": str(e)[:2000]}))
        sys.exit(3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
