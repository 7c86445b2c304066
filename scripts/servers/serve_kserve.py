"""Serve the iris model with KServe's Python ModelServer (V1 and V2 REST on one port, V2 gRPC on another).

Copied by scripts/servers/train_iris.py next to model.joblib; tests/servers/harness.py runs it as

    <cache>/kserve-<pins hash>/venv/bin/python serve_kserve.py --http_port P --grpc_port Q [--enable_grpc false]

Every flag of kserve.model_server.parser is accepted. The model mirrors KServe's own sklearnserver: the
request goes through kserve.utils.utils.get_predict_input (V1 instances/inputs → ndarray or DataFrame; V2 with
content_type "pd" → DataFrame, otherwise the first input as an ndarray), the answer through
get_predict_response, and any error is raised as kserve.errors.InferenceError (→ 500 {"error": "..."}).
Note: uvicorn binds 0.0.0.0 and gRPC [::]; there is no flag to change that. Connect to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import joblib
from kserve import Model, ModelServer, model_server
from kserve.errors import InferenceError
from kserve.utils.utils import get_predict_input, get_predict_response


class IrisModel(Model):
    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path
        self.clf: Any = None
        self.load()

    def load(self) -> bool:
        self.clf = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        try:
            x = get_predict_input(payload)
            return get_predict_response(payload, self.clf.predict(x), self.name)
        except Exception as e:
            raise InferenceError(str(e)) from e


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_file", default=str(Path(__file__).with_name("model.joblib")))
    args, _ = parser.parse_known_args()
    name = args.model_name if args.model_name != "model" else "iris"
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc).start(
        [IrisModel(name, Path(args.model_file))]
    )


if __name__ == "__main__":
    main()
