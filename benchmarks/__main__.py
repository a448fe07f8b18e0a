"""``python -m benchmarks``: every benchmark of the project, one after another."""

import sys

from . import bench_emulator

sys.exit(bench_emulator.main(sys.argv[1:]))
