"""Vendor a CustomResourceDefinition's schema for the offline manifest tests (tests/ecosystem/test_manifests.py).

    python tests/ecosystem/crds/vendor.py CRD.yaml "owner/repo path@commit"

writes ``<plural>.<group>.json`` beside this file: the CRD's first served version's openAPIV3Schema, with its
``description`` texts left out (they are most of a CRD's size and judge nothing), and where it came from.
The test derives a strict schema from it (schema.strict): unknown fields fail.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        # A property may itself be called "description" (under "properties"): only the keyword goes.
        return {k: without_descriptions(v) for k, v in node.items()
                if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def vendor(crd_path: Path, source: str) -> Path:
    crd = yaml.safe_load(crd_path.read_text(encoding="utf-8"))
    assert crd["kind"] == "CustomResourceDefinition", crd_path
    spec = crd["spec"]
    version = next(v for v in spec["versions"] if v.get("served", True))
    out = HERE / f"{spec['names']['plural']}.{spec['group']}.json"
    out.write_text(json.dumps({
        "source": source,
        "apiVersion": f"{spec['group']}/{version['name']}",
        "kind": spec["names"]["kind"],
        "schema": without_descriptions(version["schema"]["openAPIV3Schema"]),
    }, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(vendor(Path(sys.argv[1]), sys.argv[2]))
