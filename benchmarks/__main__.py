"""``python -m benchmarks``: every benchmark of the project, one after another.

``--quick`` is passed to each; ``--only`` applies to the emulator benchmarks.
"""

import sys

from . import (
    bench_audit,
    bench_cloudmsg,
    bench_emulator,
    bench_identity,
    bench_modem,
    bench_scan,
    bench_send,
    bench_tls,
    bench_wire,
)

argv = sys.argv[1:]
status = bench_emulator.main(argv)
print()
status |= bench_identity.main([a for a in argv if a == "--quick"])
print()
status |= bench_modem.main([a for a in argv if a == "--quick"])
for bench in (bench_cloudmsg, bench_send, bench_scan, bench_wire, bench_tls, bench_audit):
    print()
    status |= bench.main([a for a in argv if a == "--quick"])
sys.exit(status)
