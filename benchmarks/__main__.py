"""Run every benchmark section and write docs/benchmarks.md."""

import argparse
from pathlib import Path

from rich.progress import Progress

from benchmarks import dualrate, policies, serving, sim
from benchmarks.common import machine_description

SECTIONS = {
    "policies": policies.run,
    "serving": serving.run,
    "sim": sim.run,
    "dualrate": dualrate.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=50, help="measured calls per cell")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--only", choices=sorted(SECTIONS), help="run one section (for a look)")
    args = parser.parse_args()
    with Progress() as progress:
        chosen = [SECTIONS[args.only]] if args.only else list(SECTIONS.values())
        sections = [run(args.samples, progress) for run in chosen]
    header = [
        "# Benchmarks",
        "",
        "Written by `make bench`; medians and ratios come from one run on one machine.",
        "",
        f"Machine: {machine_description()}",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header) + "\n\n".join(sections) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
