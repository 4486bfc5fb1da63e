"""Run every benchmark section and write docs/benchmarks.md."""

import argparse
from pathlib import Path

from rich.progress import Progress

from benchmarks import policies
from benchmarks.common import machine_description

SECTIONS = {"policies": policies.run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=50, help="measured calls per cell")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    with Progress() as progress:
        sections = [run(args.samples, progress) for run in SECTIONS.values()]
    header = [
        "# Benchmarks",
        "",
        "Written by `make bench`; medians and ratios come from one run on one machine.",
        "",
        f"Machine: {machine_description()}",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + sections) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
