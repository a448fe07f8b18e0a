"""Kernel facts a handset shows where scripts read them: /proc/cpuinfo, /proc/meminfo, /proc/stat,
/proc/version and ``uname``, matching the profile's ABI rather than the lab host's.

The sandbox's /proc is the kernel's own for its pid namespace (processes, /proc/self, uptime from
the time namespace); these four files are generated and mounted over it. Their layouts are the
kernel's (fs/proc/meminfo.c, fs/proc/stat.c, arch/arm64/kernel/cpuinfo.c, arch/arm/kernel/setup.c
c_show); the values (BogoMIPS, memory sizes, the kernel build string) are guesses kept here as data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Kernel:
    machine: str  # uname -m
    release: str  # uname -r
    version: str  # uname -v
    cpuinfo: str
    cores: int = 4
    mem_kb: int = 1897664


# ro.product.cpu.abi -> the kernel an Android build of that ABI runs (a guess per era: 3.4 for
# the KitKat-era 32-bit Qualcomm builds, 4.14 for Android 11 arm64 builds)
_ARMV7_CPUINFO = """Processor	: ARMv7 Processor rev 0 (v7l)
processor	: 0
BogoMIPS	: 38.40

processor	: 1
BogoMIPS	: 38.40

processor	: 2
BogoMIPS	: 38.40

processor	: 3
BogoMIPS	: 38.40

Features	: swp half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt
CPU implementer	: 0x51
CPU architecture: 7
CPU variant	: 0x2
CPU part	: 0x06f
CPU revision	: 0

Hardware	: Qualcomm MSM 8974 (Flattened Device Tree)
Revision	: 0000
Serial		: 0000000000000000
"""


def _arm64_cpuinfo(cores: int) -> str:
    block = (
        "processor\t: {n}\nBogoMIPS\t: 52.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 "
        "sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd05\n"
        "CPU revision\t: 0\n\n"
    )
    return "".join(block.format(n=n) for n in range(cores)) + "Hardware\t: MT6769V/CU\n"


def kernel_for(abi: str) -> Kernel:
    if abi.startswith("arm64"):
        return Kernel(
            "aarch64",
            "4.14.186-perf+",
            "#1 SMP PREEMPT Thu Apr 1 00:00:00 CST 2021",
            _arm64_cpuinfo(8),
            cores=8,
            mem_kb=3809400,
        )
    return Kernel("armv7l", "3.4.0-perf-g0a1b2c3", "#1 SMP PREEMPT Fri Jul 4 02:10:11 CST 2014", _ARMV7_CPUINFO)


def proc_version(k: Kernel) -> str:
    return (
        f"Linux version {k.release} (builder@miui-build) (gcc version 4.9.x 20150123 (prerelease) (GCC) ) {k.version}\n"
    )


def proc_meminfo(k: Kernel) -> str:
    total = k.mem_kb
    rows = [
        ("MemTotal", total),
        ("MemFree", total // 10),
        ("MemAvailable", total // 3),
        ("Buffers", 8192),
        ("Cached", total // 4),
        ("SwapCached", 0),
        ("Active", total // 4),
        ("Inactive", total // 5),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Dirty", 0),
        ("AnonPages", total // 5),
        ("Mapped", total // 8),
        ("Shmem", 4096),
        ("Slab", 65536),
        ("KernelStack", 16384),
        ("PageTables", 32768),
        ("CommitLimit", total // 2),
        ("Committed_AS", total * 2),
        ("VmallocTotal", 263061440),
    ]
    return "".join(f"{name + ':':<16}{value:>8} kB\n" for name, value in rows)


def proc_stat(k: Kernel, boot_epoch: float) -> str:
    cpu = "cpu  4705 356 5841 1253090 1254 0 163 0 0 0\n"
    per = "".join(f"cpu{n} 1176 89 1460 313272 313 0 40 0 0 0\n" for n in range(k.cores))
    return (
        cpu + per + "intr 1462898 0 0 0\nctxt 2283451\n"
        f"btime {int(boot_epoch)}\nprocesses 4170\nprocs_running 1\nprocs_blocked 0\n"
        "softirq 630512 0 179066 11 2 0 0 162843 0 0 288590\n"
    )


def write_proc(directory, abi: str) -> dict[str, str]:
    """Writes the generated files; returns {/proc path: host path}."""
    k = kernel_for(abi)
    files = {
        "cpuinfo": k.cpuinfo,
        "meminfo": proc_meminfo(k),
        "stat": proc_stat(k, time.time()),
        "version": proc_version(k),
    }
    out = {}
    for name, text in files.items():
        p = directory / name
        p.write_text(text)
        p.chmod(0o444)
        out[f"/proc/{name}"] = str(p)
    return out
