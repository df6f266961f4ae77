"""The erasure receipt: what an operator keeps to show a deletion request was honoured.

It holds the request, hashes of the input and output weights, metrics and versions — never
audio, features or anything else derived from the forgotten person's data.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import lightning
import torch

import qpae
from qpae.checkpoints import read_model
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
            "previously_forgotten_names": [class_names[c] for c in request.previously_forgotten],
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


@dataclass(frozen=True)
class Verdict:
    """The answer of :func:`verify_receipt`: ``ok`` and a one-line reason."""

    ok: bool
    reason: str


def verify_receipt(receipt_path: str | Path, model_path: str | Path) -> Verdict:
    """Is ``model_path`` exactly the model that ``receipt_path`` describes?

    The file's sha256 must equal the receipt's ``output_sha256`` (so a one-byte edit fails), and
    the model's own record must agree with the receipt: same dataset and split, and every class
    the receipt says was forgotten is forgotten in the model.
    """
    receipt_path, model_path = Path(receipt_path), Path(model_path)
    try:
        receipt = json.loads(receipt_path.read_text(encoding="utf-8"))
        expected = receipt["weights"]["output_sha256"]
        request = receipt["request"]
    except FileNotFoundError:
        return Verdict(False, f"no receipt at {receipt_path}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        return Verdict(False, f"{receipt_path} is not a qpae erasure receipt ({type(err).__name__}: {err})")
    if not model_path.is_file():
        return Verdict(False, f"no model file at {model_path}")
    try:
        model = read_model(model_path)
    except ValueError as err:
        return Verdict(False, str(err))
    if model.sha256 != expected:
        return Verdict(
            False,
            f"{model_path} has sha256 {model.sha256[:16]}…, the receipt describes {str(expected)[:16]}…: "
            "not the file the receipt was issued for",
        )
    data = model.meta.get("data", {})
    if data.get("dataset") != request.get("dataset") or data.get("split_fingerprint") != request.get(
        "split_fingerprint"
    ):
        return Verdict(False, "the model's dataset or split differs from the receipt's request")
    claimed = set(request.get("forget_classes", [])) | set(request.get("previously_forgotten", []))
    if not claimed <= set(model.meta.get("forgotten_classes", [])):
        return Verdict(False, "the model does not record every class the receipt says it forgot")
    class_names = data.get("class_names") or []
    for indices, names in (
        (request.get("forget_classes", []), request.get("forget_class_names")),
        (request.get("previously_forgotten", []), request.get("previously_forgotten_names")),
    ):
        if names is None:  # receipts before version 1.1 carried no names of earlier requests
            continue
        try:
            actual = [class_names[c] for c in indices]
        except (IndexError, TypeError):
            return Verdict(False, "the receipt names classes the model does not have")
        if list(names) != actual:
            return Verdict(
                False, f"the receipt names {list(names)} but those classes of the model are {actual}"
            )
    names = ", ".join(request.get("forget_class_names") or [])
    reason = f"{model_path} matches {receipt_path.name}: forgot {names} (sha256 {expected[:16]}…)"
    purge = receipt.get("purge")
    if isinstance(purge, dict) and purge.get("status") == "pending":
        # the model is the one described; the deletion of the features the run promised is not done
        reason += (
            "; WARNING: its purge is pending (the run stopped before deleting the speakers' features "
            f"from the feature store): finish it with {purge.get('how_to_finish', 'qpae-store … store.action=purge')}"
        )
    return Verdict(True, reason)
