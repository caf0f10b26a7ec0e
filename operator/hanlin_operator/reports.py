"""The EvalRun report the merge step writes under `spec.output.uri`.

The merge step publishes its results through the progress channel; when it
did not (an older runtime image, or a merge run by hand), the operator reads
`results.json` from the output location instead.
"""

from __future__ import annotations

import json
from typing import Any

from hanlin import storage

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.md"


def read_eval_report(output_uri: str) -> dict[str, Any]:
    """`{"results": [...], "reportUri": ...}` from the output location; `{}` if there is none.

    Raises ConnectionError when the storage cannot be read (a temporary condition).
    """
    root = storage.parse_uri(output_uri)
    results_uri = root.join(RESULTS_FILE)
    try:
        if not storage.exists(results_uri):
            return {}
        doc = json.loads(storage.read_bytes(results_uri))
    except ValueError:
        return {}
    except Exception as err:  # noqa: BLE001 (any backend failure may heal: retry later)
        raise ConnectionError(f"cannot read {results_uri}: {err}") from err
    results = [
        {k: v for k, v in r.items() if v is not None}
        for r in doc.get("results") or []
        if isinstance(r, dict)
    ]
    return {"results": results, "reportUri": str(root.join(SUMMARY_FILE))}
