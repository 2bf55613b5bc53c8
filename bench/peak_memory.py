"""Peak memory of a whole command and every process it starts (Ray's included: `ray.init()` starts GCS,
raylet and workers as descendants of the driver), sampled every 0.5 s with psutil.

Two sums are reported: RSS (counts shared pages, such as torch's libraries, once per process, so it
overstates) and PSS (shares each page among the processes mapping it: the memory the command really
holds). The goal is checked against PSS; both are printed.

    .venv/bin/python bench/peak_memory.py [-- make run]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import psutil


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def sample(processes: list[psutil.Process]) -> tuple[int, int, int, list[tuple[str, int]]]:
    """Summed RSS and PSS, how many processes, and (process, PSS) for each."""
    rss = pss = count = 0
    each = []
    for p in processes:
        try:
            info = p.memory_full_info()
            label = (p.cmdline() or [p.name()])[0].rsplit("/", 1)[-1][:40]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        own = getattr(info, "pss", info.rss)
        rss, pss, count = rss + info.rss, pss + own, count + 1
        each.append((f"{label} [{p.pid}]", own))
    return rss, pss, count, each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="*", default=["make", "run"])
    args = parser.parse_args()
    started = time.perf_counter()
    child = subprocess.Popen(args.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = psutil.Process(child.pid)
    peak_rss = peak_pss = most = 0
    peak_at = 0.0
    at_peak: list[tuple[str, int]] = []
    own_peak: dict[str, int] = {}  # each process's own largest PSS, whenever it came
    while child.poll() is None:
        rss, pss, count, each = sample(tree(root))
        for label, own in each:
            own_peak[label] = max(own, own_peak.get(label, 0))
        if pss > peak_pss:
            at_peak, peak_at = sorted(each, key=lambda e: -e[1]), time.perf_counter() - started
        peak_rss, peak_pss, most = max(peak_rss, rss), max(peak_pss, pss), max(most, count)
        time.sleep(0.5)  # a sampling interval
    seconds = time.perf_counter() - started
    gb = 2**30
    print(f"`{' '.join(args.command)}` exited {child.returncode} after {seconds:.0f} s")
    print(f"peak PSS {peak_pss / gb:.2f} GB, peak RSS sum {peak_rss / gb:.2f} GB, up to {most} processes")
    print(f"at the peak ({peak_at:.0f} s in), by PSS, and each process's own peak:")
    for label, own in at_peak:
        print(f"  {own / gb:6.2f} GB  (own peak {own_peak[label] / gb:5.2f})  {label}")
    print(
        json.dumps(
            {
                "name": "peak_memory",
                "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs,"
                f" {psutil.virtual_memory().total / gb:.0f} GB",
                "command": " ".join(args.command),
                "exit_code": child.returncode,
                "seconds": round(seconds),
                "peak_pss_gb": round(peak_pss / gb, 2),
                "peak_rss_sum_gb": round(peak_rss / gb, 2),
                "max_processes": most,
                "peak_at_s": round(peak_at),
                "largest_at_peak_gb": {
                    f"{i}:{label}": round(own / gb, 2) for i, (label, own) in enumerate(at_peak[:8])
                },
            }
        )
    )


if __name__ == "__main__":
    main()
