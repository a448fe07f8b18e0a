"""``python -m benchmarks``: every benchmark of the project, one after another.

``--quick`` is passed to each; ``--only`` applies to the emulator benchmarks.
"""

import sys

from . import bench_emulator, bench_identity, bench_modem

argv = sys.argv[1:]
status = bench_emulator.main(argv)
print()
status |= bench_identity.main([a for a in argv if a == "--quick"])
print()
status |= bench_modem.main([a for a in argv if a == "--quick"])
sys.exit(status)
