"""Tests against real model servers (MLServer, KServe, MLflow) installed by scripts/model-servers.sh."""
