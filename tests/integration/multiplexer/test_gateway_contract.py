"""``docs/contract/gateway.openapi.json`` is exactly what the served app documents under /api/v1.

Regenerate after a deliberate API change (docs/contract/README.md):
``.venv/bin/python tests/integration/multiplexer/gateway_world.py``
"""

from __future__ import annotations

import json

from gateway_world import CONTRACT, gateway_openapi


def test_kept_contract_matches_the_app():
    kept = json.loads(CONTRACT.read_text())
    served = gateway_openapi()
    assert sorted(kept["paths"]) == sorted(served["paths"]), "paths added or removed"
    assert kept == served, (
        "docs/contract/gateway.openapi.json is stale: run "
        "`.venv/bin/python tests/integration/multiplexer/gateway_world.py` and review the diff"
    )


def test_every_error_answer_is_documented_in_the_error_shape():
    doc = gateway_openapi()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status in ("401", "404", "409", "422"):
                schema = op["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
