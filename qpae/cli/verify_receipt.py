"""``qpae-verify-receipt RECEIPT MODEL``: is this model file the one the receipt describes?

Exit status 0 and one line when it is; 1 and a one-line reason when it is not.
"""

from __future__ import annotations

import argparse
import sys

from qpae.unlearning.receipt import verify_receipt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="qpae-verify-receipt",
        description="Check that a model file is exactly the one an erasure receipt describes.",
        epilog="example: qpae-verify-receipt runs/unlearn/…/request-01/receipt.json "
        "runs/unlearn/…/request-01/model.pt",
    )
    parser.add_argument("receipt", help="receipt.json written by qpae-unlearn")
    parser.add_argument("model", help="the model file to check (model.pt)")
    args = parser.parse_args(argv)
    verdict = verify_receipt(args.receipt, args.model)
    print(("OK: " if verdict.ok else "FAILED: ") + verdict.reason)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
