"""Train the tiny iris model that the test model servers serve, and lay it out for one server.

Run with the server's own venv python (scripts/model-servers.sh does):

    ~/.cache/mlchaos/servers/<server>-<pins hash>/venv/bin/python scripts/servers/train_iris.py <server> <out_dir>

with <server> one of mlserver, kserve, mlflow. The data is scikit-learn's bundled iris set (shipped inside the
scikit-learn wheel: nothing is downloaded). The model is a LogisticRegression fitted on a pandas DataFrame with
the columns sepal_length, sepal_width, petal_length, petal_width, so it knows its feature names: a renamed or
missing column is caught by scikit-learn when the input is a DataFrame. Classes are 0 setosa, 1 versicolor and
2 virginica; the first iris row (5.1, 3.5, 1.4, 0.2) is predicted 0 and (6.7, 3.0, 5.2, 2.3) is predicted 2.

Layouts written into <out_dir> (which must not exist yet):
- mlserver: model-settings.json (sklearn runtime, name "iris", the four inputs declared as FP64) + model.joblib
- kserve:   model.joblib + serve_kserve.py (copied from beside this file)
- mlflow:   an MLflow model directory (MLmodel, model.pkl, ...) with a column signature
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import joblib
import sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MODEL_NAME = "iris"


def train() -> tuple[Any, Any]:
    iris = load_iris(as_frame=True)
    x = iris.data.copy()
    x.columns = FEATURES
    y = iris.target
    clf = LogisticRegression(max_iter=1000, random_state=0)
    clf.fit(x, y)
    expected = [0, 2]
    got = [int(v) for v in clf.predict(x.iloc[[0, 140]])]
    if got != expected:
        raise SystemExit(f"train_iris.py: sanity check failed: predicted {got} for rows 0 and 140, wanted {expected}")
    return clf, x


def write_mlserver(clf: Any, out: Path) -> None:
    joblib.dump(clf, out / "model.joblib")
    settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        # Declared inputs: the V2 metadata route then lists the feature names, and each named input is decoded
        # as FP64. A columnar request still needs "parameters": {"content_type": "pd"} at the request level to
        # reach the model as a DataFrame (no model-level default: that would break the matrix form).
        "inputs": [{"name": name, "datatype": "FP64", "shape": [-1]} for name in FEATURES],
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }
    (out / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")


def write_kserve(clf: Any, out: Path) -> None:
    joblib.dump(clf, out / "model.joblib")
    shutil.copy(Path(__file__).with_name("serve_kserve.py"), out / "serve_kserve.py")


def write_mlflow(clf: Any, x: Any, out: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    signature = infer_signature(x, clf.predict(x))
    # Explicit requirements: skips MLflow's requirement inference (a subprocess that imports the model), and
    # `mlflow models serve --env-manager local` never reads them anyway.
    mlflow.sklearn.save_model(
        clf,
        str(out),
        signature=signature,
        input_example=x.iloc[:2],
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
    )


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("mlserver", "kserve", "mlflow"):
        raise SystemExit("usage: train_iris.py mlserver|kserve|mlflow OUT_DIR")
    server, out = sys.argv[1], Path(sys.argv[2])
    clf, x = train()
    if server == "mlflow":
        write_mlflow(clf, x, out)  # save_model creates the directory and refuses an existing one
    else:
        out.mkdir(parents=True)
        if server == "mlserver":
            write_mlserver(clf, out)
        else:
            write_kserve(clf, out)
    print(f"train_iris.py: wrote the {server} layout of model {MODEL_NAME!r} to {out}")


if __name__ == "__main__":
    main()
