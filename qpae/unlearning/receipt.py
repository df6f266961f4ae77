"""The erasure receipt: what an operator keeps to show a deletion request was honoured.

It holds the request, hashes of the input and output weights, metrics and versions — never
audio, features or anything else derived from the forgotten person's data.
"""

from __future__ import annotations

import datetime as dt
import platform

import lightning
import torch

import qpae
from qpae.unlearning.request import ForgetRequest


def erasure_receipt(
    request: ForgetRequest,
    class_names: list[str],
    data: dict,
    method: dict,
    input_sha256: str,
    output_sha256: str,
    before: dict,
    after: dict,
) -> dict:
    """A JSON-ready receipt for one request."""
    return {
        "receipt_version": 1,
        "time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "request": {
            "dataset": data["dataset"],
            "forget_classes": list(request.forget_classes),
            "forget_class_names": [class_names[c] for c in request.forget_classes],
            "previously_forgotten": list(request.previously_forgotten),
            "split_fingerprint": data["split_fingerprint"],
        },
        "method": method,
        "weights": {"input_sha256": input_sha256, "output_sha256": output_sha256},
        "metrics": {"before": before, "after": after},
        "versions": {
            "qpae": qpae.__version__,
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "python": platform.python_version(),
        },
    }
