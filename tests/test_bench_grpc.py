"""benchmarks/grpc_bench.py runs end to end: its gRPC upstream, nginx's grpc_pass, mlchaos, the two load shapes."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from tests.benchmark_scripts import load

bench = load("grpc_bench")


@pytest.mark.slow
def test_a_short_run_measures_every_path_and_the_fault_acts(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    paths = "direct,nginx,passthrough,feature" if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() \
        else "direct,passthrough,feature"
    out = tmp_path / "summary.json"
    rc = bench.main(["--rounds", "1", "--seconds", "0.5", "--workers", "1", "--concurrency", "4", "--rate", "200",
                     "--open-seconds", "0.25", "--startup", "2", "--paths", paths, "--json", str(out)])
    assert rc in (0, 1)  # 1: a bar missed on a loaded machine; the run itself worked
    summary = json.loads(out.read_text())
    for name in paths.split(","):
        row = summary["paths"][name]
        assert row["errors"] == 0 and row["calls_per_s_median"] > 0, row
        assert row["open_calls"] == 50 and 0 < row["open_p50_ms_median"] < 1000, row  # 200/s for 0.25 s
    assert summary["pairs"]["feature_over_passthrough"]["per_round"][0] > 0
    assert summary["faulted_calls"] > 0  # 5% of the feature path's calls: the experiment really ran
    assert summary["nproc"] >= 1 and summary["date"].endswith("UTC")


def test_the_request_is_the_iris_row_as_tritonclient_encodes_it() -> None:
    assert bench._varint(1) == b"\x01" and bench._varint(300) == b"\xac\x02"
    request = bench.infer_request((1.0, 2.0, 3.0, 4.0))
    assert request.startswith(b"\x0a\x04iris")  # field 1, length 4
    # raw_input_contents (field 7, 8 bytes each), in the order of the inputs, little-endian FP64
    assert request.endswith(b"".join(b"\x3a\x08" + struct.pack("<d", v) for v in (1.0, 2.0, 3.0, 4.0)))
    for name in bench.FEATURES:
        assert bench._tensor(name, "FP64", [1]) in request
    assert bench.infer_response().endswith(b"\x32\x08" + bytes(8))  # raw_output_contents: INT64 0


def test_medians_and_quantiles() -> None:
    assert bench.median([3.0, 1.0, 2.0]) == 2.0 and bench.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert bench.quantile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert bench.quantile(list(map(float, range(100))), 0.99) == 99.0
