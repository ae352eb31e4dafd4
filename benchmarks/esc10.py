"""The evaluation benchmark on ESC-10 (or any folder in the ESC-50 layout).

    python benchmarks/esc10.py [--quick] [--data DIR] [--train-folds 1 2 3] [--test-fold 4]
                               [--speech DIR] [--others DIR] [--out benchmarks/results]
    python benchmarks/make_table.py      # docs/benchmarks.md from the saved JSON

The protocol is in the docstring of ``nmfinterp/benchmark.py`` (also run by ``nmfinterp bench``).
"""

import sys

from nmfinterp.benchmark import main

if __name__ == "__main__":  # the cost section starts fresh processes: keep this guard
    sys.exit(main())
