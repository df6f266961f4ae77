"""Write the small layouts that ``bench=paper_rehearsal`` reads (see qpae.bench.rehearsal)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qpae.bench.rehearsal import write_layouts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="the paper's four dataset layouts, written small from the offline espeak-ng corpora"
    )
    parser.add_argument("root", type=Path, help="the folder to write the four layouts into (bench_real_data)")
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--accent-speakers", type=int, default=3)
    args = parser.parse_args(argv)
    if args.root.exists() and any(args.root.iterdir()):
        parser.error(f"{args.root} is not empty: the rehearsal writes its layouts into an empty folder")
    counts = write_layouts(args.root, args.speakers, args.repetitions, args.accent_speakers)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
