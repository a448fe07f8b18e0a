"""What the handset's kernel shows in /proc for tools that read it: cpuinfo per ABI/SoC, stat.

cpuinfo layouts: arm64 kernels (arch/arm64/kernel/cpuinfo.c ``c_show``: one block per CPU with
``processor``, ``BogoMIPS``, ``Features``, ``CPU implementer``... and, on vendor kernels, a final
``Hardware`` line); 32-bit ARM kernels (arch/arm/kernel/setup.c: ``Processor : ARMv7 ...``).
The per-SoC values (core counts, implementer/part ids) are public CPU facts: Qualcomm Kryo 465
(atoll/SM7125: implementer 0x51, parts 0x804 gold + 0x805 silver) and the Cortex-A53 (0x41, 0xd03)
of MediaTek's MT6795; unknown platforms fall back to 8 Cortex-A53 cores (a guess).
/proc/stat: fs/proc/stat.c (``cpu`` then ``cpuN`` lines of 10 counters in USER_HZ, ``btime``...).
"""

from __future__ import annotations

import time

_ARM64_FEATURES = {
    "atoll": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
}
_SOCS = {  # platform: (hardware line, [(implementer, variant, part, revision)] per core)
    "atoll": ("Qualcomm Technologies, Inc ATOLL", [(0x51, 0xD, 0x805, 14)] * 6 + [(0x51, 0xD, 0x804, 14)] * 2),
    "mt6795": ("MT6795", [(0x41, 0x0, 0xD03, 4)] * 8),
    "mt6785": ("MT6785", [(0x41, 0x1, 0xD05, 0)] * 6 + [(0x41, 0x3, 0xD0B, 1)] * 2),
}
_DEFAULT_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32"


def cpuinfo(abi: str, platform: str) -> str:
    if not abi.startswith("arm64"):
        return (
            "Processor\t: ARMv7 Processor rev 3 (v7l)\nprocessor\t: 0\nBogoMIPS\t: 38.40\n"
            "Hardware\t: Qualcomm MSM 8226 (Flattened Device Tree)\n"
        )
    hardware, cores = _SOCS.get(platform, (platform.upper() or "Unknown", [(0x41, 0x0, 0xD03, 4)] * 8))
    features = _ARM64_FEATURES.get(platform, _DEFAULT_FEATURES)
    out = []
    for n, (impl, variant, part, rev) in enumerate(cores):
        out.append(
            f"processor\t: {n}\nBogoMIPS\t: 38.40\nFeatures\t: {features}\n"
            f"CPU implementer\t: 0x{impl:02x}\nCPU architecture: 8\nCPU variant\t: 0x{variant:x}\n"
            f"CPU part\t: 0x{part:03x}\nCPU revision\t: {rev}\n"
        )
    return "\n".join(out) + f"\nHardware\t: {hardware}\n"


def stat(uptime: float, cores: int = 8) -> str:
    ticks = int(uptime * 100)  # USER_HZ
    user, system = ticks // 10, ticks // 20
    idle = ticks * cores - user - system

    def line(name: str, share: int) -> str:
        return f"{name} {user // share} 0 {system // share} {idle // share} 0 0 0 0 0 0"

    lines = ["cpu  " + line("", 1)[1:]] + [line(f"cpu{i}", cores) for i in range(cores)]
    lines += [
        "intr 0",
        f"ctxt {ticks * 50}",
        f"btime {int(time.time() - uptime)}",
        f"processes {200 + ticks // 100}",
        "procs_running 1",
        "procs_blocked 0",
        "softirq 0",
    ]
    return "\n".join(lines) + "\n"
