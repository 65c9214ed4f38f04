"""What refusing a hostile file costs (issue 28, item 6): `ruflo orchestrate --workload` on a
600-byte YAML "billion laughs" and `ruflo rvf import` on a file nested 100,000 deep, each run as
a real subprocess; printed with the baseline of the same run: the same command refusing an
ordinary mistake (an unknown field; a truncated file), and the old way of reading the bomb
(`yaml.safe_load`, then the agent's config written as JSON, as storing it did), capped at 1 GiB
of address space so the machine survives it. Every child runs under that cap.

    .venv/bin/python bench/hostile_files.py

Each row: exit code, wall seconds, CPU seconds (user+sys of the child), peak RSS in MiB.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUFLO = Path(sys.executable).with_name("ruflo")
CAP = 1024 ** 3

LAUGHS = "\n".join(
    ["name: laughs", "objective: laugh", "tasks: [{id: t1}]", "agents:", "  - name: joker",
     "    config:", f"      l0: &l0 [{', '.join(['lol'] * 9)}]"]
    + [f"      l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)]) + "\n"
TYPO = "name: typo\nobjective: x\ntasks: [{id: t1, efort: 2}]\n"
OLD_WAY = ("import json, sys, yaml\n"
           "data = yaml.safe_load(open(sys.argv[1]).read())\n"
           "json.dumps(data['agents'][0]['config'])\n")


def measure(args: list[str], env: dict[str, str], *, cap: int = CAP) -> str:
    """Run one child, alone, and report its exit code, wall and CPU seconds and peak RSS."""
    runner = ("import resource, subprocess, sys, time\n"
              "cap = int(sys.argv[1])\n"
              "def limit(): resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
              "start = time.perf_counter()\n"
              "code = subprocess.call(sys.argv[2:], preexec_fn=limit, stdout=subprocess.DEVNULL,"
              " stderr=subprocess.DEVNULL, timeout=300)\n"
              "wall = time.perf_counter() - start\n"
              "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
              "print(code, wall, use.ru_utime + use.ru_stime, use.ru_maxrss / 1024)\n")
    done = subprocess.run([sys.executable, "-c", runner, str(cap), *args], env=env,
                          capture_output=True, text=True, check=True, timeout=600)
    code, wall, cpu, rss = done.stdout.split()
    return f"exit {code:>3}  wall {float(wall):6.2f} s  cpu {float(cpu):6.2f} s  " \
           f"peak RSS {float(rss):7.1f} MiB"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        env = {"PATH": "/usr/bin:/bin", "RUFLO_DATA_DIR": str(tmp / "data"), "RUFLO_CONFIG": "",
               "OPENAI_BASE_URL": "http://127.0.0.1:9", "OPENAI_API_KEY": "sk-bench",
               "HOME": str(tmp), **({"PYTHONPATH": os.environ["PYTHONPATH"]}
                                    if "PYTHONPATH" in os.environ else {})}
        for name, text in (("laughs.yaml", LAUGHS), ("typo.yaml", TYPO)):
            (tmp / name).write_text(text)
        (tmp / "deep.json").write_text('{"rvf_version": "2.0", "collections": {"users": '
                                       '{"u": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}}}")
        (tmp / "truncated.json").write_text('{"rvf_version": "2.0", "collections": {"us')
        started = time.perf_counter()
        rows = [
            ("orchestrate: billion laughs (600 B)",
             [str(RUFLO), "orchestrate", "--workload", str(tmp / "laughs.yaml")]),
            ("  baseline: a workload with a typo",
             [str(RUFLO), "orchestrate", "--workload", str(tmp / "typo.yaml")]),
            ("  baseline: the old way (safe_load + JSON)",
             [sys.executable, "-c", OLD_WAY, str(tmp / "laughs.yaml")]),
            ("rvf import: nested 100,000 deep",
             [str(RUFLO), "rvf", "import", str(tmp / "deep.json")]),
            ("  baseline: a truncated file",
             [str(RUFLO), "rvf", "import", str(tmp / "truncated.json")]),
        ]
        for label, args in rows:
            print(f"{label:<55} {measure(args, env)}", flush=True)
        print(f"(whole bench {time.perf_counter() - started:.1f} s; this process peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
