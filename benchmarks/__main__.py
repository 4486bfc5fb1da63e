"""Run the benchmark sections and write docs/benchmarks.md."""

import argparse
import re
from pathlib import Path

from rich.progress import Progress

from benchmarks import (
    arena,
    dualrate,
    leaderboard,
    lerobot_policies,
    openpi,
    policies,
    queue,
    serving,
    sim,
)
from benchmarks.common import machine_description

SECTIONS = {
    "policies": policies.run,
    "serving": serving.run,
    "openpi": openpi.run,
    "sim": sim.run,
    "dualrate": dualrate.run,
    "arena": arena.run,
    "leaderboard": leaderboard.run,
    "queue": queue.run,
    "lerobot": lerobot_policies.run,
}
HEADER = (
    "# Benchmarks\n\nWritten by `make bench`; medians and ratios come from one run on one "
    "machine.\n"
)


def wrap(key: str, text: str) -> str:
    return f"<!-- section:{key} -->\n{text}\n<!-- /section:{key} -->"


def merge(existing: str, key: str, text: str) -> str:
    """Replace one section of an existing report (or append it), keeping the others."""
    pattern = re.compile(rf"<!-- section:{key} -->.*?<!-- /section:{key} -->", re.DOTALL)
    if pattern.search(existing):
        return pattern.sub(lambda _: wrap(key, text), existing)
    return existing.rstrip("\n") + "\n\n" + wrap(key, text) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=50, help="measured calls per cell")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument(
        "--only",
        choices=sorted(SECTIONS),
        help="run one section and replace just that one in --out",
    )
    args = parser.parse_args()
    keys = [args.only] if args.only else list(SECTIONS)
    with Progress() as progress:
        sections = {key: SECTIONS[key](args.samples, progress) for key in keys}
    machine = machine_description()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.only and args.out.exists():
        text = sections[args.only] + f"\n\n_This section measured separately: {machine}._"
        report = merge(args.out.read_text(encoding="utf-8"), args.only, text)
    else:
        body = "\n\n".join(wrap(key, text) for key, text in sections.items())
        report = f"{HEADER}\nMachine: {machine}\n\n{body}\n"
    args.out.write_text(report, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
