"""A remote TVM device over a real tracker and server on localhost against the local ``cpu-tvm``:
whole zoo models measured alternately local, remote, local, remote (the profiler's statistics and
convergence rule), so drift of the machine falls on both sides.

    python benchmarks/remote_vs_local.py --resolution 96 --json benchmarks/results/remote_vs_local.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from hwnas import zoo
from hwnas.devices import DeviceRegistry, default_registry
from hwnas.profilers import Profiler
from hwnas.testing import LocalTvmRpc

MODELS = [("mobilenetv2", 0.5), ("resnet", 0.5), ("squeezenet", 1.0)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=2, help="local/remote pairs per model")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    rpc = LocalTvmRpc()
    try:
        toml = Path(tempfile.mkdtemp()) / "devices.toml"
        toml.write_text(f'[devices.rpc-host]\nbase = "cpu-tvm"\n[devices.rpc-host.remote]\n'
                        f'tracker = "127.0.0.1:{rpc.port}"\nkey = "{rpc.key}"\n')
        reg = DeviceRegistry([default_registry().get("cpu-tvm")])
        reg.load_toml(toml)
        local, remote = Profiler(reg.get("cpu-tvm")), Profiler(reg.get("rpc-host"))
        rows = []
        for family, width in MODELS:
            m = zoo.create(family, width, args.resolution, 1000)
            pairs = [(local.profile_model(m.onnx, name=m.name, breakdown_runs=0).latency_ms,
                      remote.profile_model(m.onnx, name=m.name, breakdown_runs=0).latency_ms)
                     for _ in range(args.rounds)]
            lo, re_ = [p[0] for p in pairs], [p[1] for p in pairs]
            ratio = (sum(re_) / len(re_)) / (sum(lo) / len(lo))
            rows.append({"model": m.name, "local_ms": lo, "remote_ms": re_, "remote_over_local": ratio})
            print(f"{m.name}: local {' / '.join(f'{x:.3f}' for x in lo)} ms, remote "
                  f"{' / '.join(f'{x:.3f}' for x in re_)} ms, remote/local {ratio:.3f}", flush=True)
    finally:
        rpc.close()
    worst = max(abs(r["remote_over_local"] - 1) for r in rows)
    print(f"largest difference: {100 * worst:.1f}%")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"resolution": args.resolution, "models": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
