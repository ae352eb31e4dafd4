"""The evaluation benchmark on a second dataset: spoken digits (FSDD) instead of ESC-10.

    python benchmarks/fsdd_digits.py [--fsdd DIR] [--takes 8] [--layout DIR] [esc10.py's arguments]
    python benchmarks/make_table.py      # docs/benchmarks.md from the saved JSON

The defaults were chosen on ESC-10's environmental sounds, five-second clips of ten classes. This
runs the same protocol (``nmfinterp/benchmark.py``'s docstring) on sounds they were not chosen on:
FSDD's spoken digits, ten classes of speech under a second long. It writes a folder in the ESC-50
layout (``meta.csv``, and ``audio/`` a link to the FSDD folder: no clip is copied) holding takes
0 to ``--takes`` − 1 of every digit and speaker, take t in fold ``t % 4 + 1`` (with 8 takes: 120
clips a fold, every speaker and digit in each), and runs the benchmark on it with
``--duration 1`` (every clip zero-padded to one second; 99% of FSDD's are shorter),
``--speech ''`` (the clips are speech already: condition (e) and Silero VAD's section, which mix
FSDD speech into the test clips, are left out), ``--skip cost`` and ``--name fsdd_digits``. Any
other argument goes to the benchmark as it is and wins over these (e.g. ``--methods ...``,
``--test-fold 3``, ``--name ...``).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
from pathlib import Path

from nmfinterp.benchmark import DEFAULT_DATA, main

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"^(\d)_([^_]+)_(\d+)\.wav$")


def write_layout(fsdd: Path, layout: Path, takes: int) -> int:
    """``layout``/meta.csv and ``layout``/audio (a link to ``fsdd``) for takes 0..takes-1 of
    every digit and speaker, take t in fold t % 4 + 1; returns the number of clips listed."""
    fsdd = Path(fsdd).resolve()
    rows = []
    for path in sorted(fsdd.glob("*.wav")):
        m = _NAME.match(path.name)
        if m and int(m.group(3)) < takes:
            digit, take = int(m.group(1)), int(m.group(3))
            rows.append((path.name, take % 4 + 1, digit, DIGITS[digit], m.group(2), take))
    if not rows:
        raise SystemExit(
            f"--fsdd {fsdd}: no '{{digit}}_{{speaker}}_{{take}}.wav' file with a take below "
            f"{takes}; expected the Free Spoken Digit Dataset's folder."
        )
    layout.mkdir(parents=True, exist_ok=True)
    audio = layout / "audio"
    if audio.is_symlink() and audio.resolve() != fsdd:
        audio.unlink()
    if not audio.exists():
        audio.symlink_to(fsdd, target_is_directory=True)
    with open(layout / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "speaker", "take"])
        w.writerows(rows)
    return len(rows)


def run(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--fsdd", type=Path, default=DEFAULT_DATA / "fsdd", help="FSDD folder")
    p.add_argument("--takes", type=int, default=8, help="takes per digit and speaker (max 50)")
    p.add_argument(
        "--layout",
        type=Path,
        default=Path(tempfile.gettempdir()) / "nmfinterp_fsdd_digits",
        help="where to write the ESC-50-layout folder (default: in the temporary directory)",
    )
    args, rest = p.parse_known_args(argv)
    if not 4 <= args.takes <= 50:
        p.error(f"--takes {args.takes}: expected 4 to 50 (a take or more in each of 4 folds)")
    n = write_layout(args.fsdd, args.layout, args.takes)
    print(f"{args.layout}: {n} clips of {args.fsdd}", flush=True)
    defaults = ["--duration", "1", "--speech", "", "--skip", "cost", "--name", "fsdd_digits"]
    return main(["--data", str(args.layout), *defaults, *rest])


if __name__ == "__main__":  # the benchmark's cost section starts fresh processes: keep this guard
    sys.exit(run())
