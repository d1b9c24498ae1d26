"""Where a sparse training step's time goes: kernels, device time and wall time.

For each variant of ``overhead.py`` (same models, optimizer and settings) this
compiles the step, keeps its optimized HLO, and traces ``--calls`` chained calls
with the JAX profiler. From the trace it reports, per call: the number of device
kernels (events on the accelerator's streams), their summed time (device busy),
and the wall time; a wall time well above the busy time means the device waits
(launch latency, host synchronisation such as a loop predicate copied to the host,
or Python dispatch; the profiler itself lengthens the wall time, so compare the busy
time with ``overhead.py``'s step time too). The HLO counts say what the compiler made
of the step: fusions, library calls (cuDNN, cuBLAS), loops, conditionals and copies.

``RigL every 100`` is traced between updates (its calls run steps 3 to 3 + calls),
so it shows what RigL costs on the steps that do not update the mask. ``RigL update
step`` (and its host-scheduled twin) repeats one step on fresh copies of its inputs:
its traced window includes making those copies, so its copies, busy time and wall
time are overstated.

Usage:
  python benchmarks/anatomy.py --models cnn --out DIR [--calls 10] [--variants ...]
  python benchmarks/anatomy.py --count-hlo DIR/hlo.tar.gz   # counts of a saved run

Writes ``DIR/anatomy.json`` (the summary), ``DIR/hlo.tar.gz`` (one optimized HLO
text per model and variant) and ``DIR/trace_<model>.json.gz`` (the Perfetto trace,
viewable at ui.perfetto.dev).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from typing import Any

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402

VARIANTS = (
    "dense",
    "masked",
    "gradual every 100",
    "RigL every 100",
    "RigL update step",
    "RigL update step (host-scheduled)",
    "straight-through",
)
HLO_OPS = ("fusion", "custom-call", "while", "conditional", "copy", "sort", "scatter")


def hlo_counts(text: str) -> dict[str, int]:
    r"""How many instructions of each kind in ``HLO_OPS`` an optimized HLO text holds
    outside fused computations (a fusion's body is one kernel, counted as its ``fusion``).

    Example:
      >>> hlo_counts("ENTRY %main {\n  %a = f32[2]{0} fusion(%x), kind=kLoop\n}")["fusion"]
      1
    """
    blocks = re.split(r"\n\s*\n", re.sub(r"/\*.*?\*/", "", text))
    outer = "\n".join(b for b in blocks if not re.match(r"\s*%?(fused|wrapped)", b))
    ops = re.findall(r"^\s*(?:ROOT )?%?[\w.\-]+ = (?:\(.*?\)|\S+) ([\w-]+)\(", outer, re.M)
    return {op: ops.count(op) for op in HLO_OPS}


def count_saved(path: str) -> dict[str, dict[str, int]]:
    """:func:`hlo_counts` of every HLO text in a ``hlo.tar.gz`` written by this script."""
    with tarfile.open(path) as tar:
        return {
            m.name: hlo_counts(tar.extractfile(m).read().decode())
            for m in tar.getmembers()
            if m.isfile()
        }


def trace_summary(trace: Any, windows: dict[str, str], calls: int) -> dict[str, Any]:
    """Per annotated window: device kernels, copies, busy time and wall time per call.

    ``windows`` maps a TraceAnnotation name to a variant name. Device events are those
    of processes named after a GPU, TPU or ``/device:``; where such a process has
    threads named ``Stream``, only those count (other threads hold derived summaries).
    """
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    meta = [e for e in events if e.get("ph") == "M"]
    procs = {
        e["pid"]: e.get("args", {}).get("name", "") for e in meta if e["name"] == "process_name"
    }
    threads = {
        (e["pid"], e["tid"]): e.get("args", {}).get("name", "")
        for e in meta
        if e["name"] == "thread_name"
    }
    device = {p for p, n in procs.items() if re.search(r"GPU|TPU|/device:", n) and "CPU" not in n}
    streams = {k for k, n in threads.items() if k[0] in device and "Stream" in n}
    spans = {
        windows[e["name"]]: (float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)))
        for e in events
        if e.get("ph") == "X" and e.get("name") in windows
    }
    on_device = [
        e
        for e in events
        if e.get("ph") == "X"
        and e.get("pid") in device
        and (not streams or (e["pid"], e.get("tid")) in streams)
    ]
    out = {}
    for variant, (start, end) in spans.items():
        inside = [e for e in on_device if start <= float(e["ts"]) <= end]
        copies = [e for e in inside if "memcpy" in e.get("name", "").lower()]
        out[variant] = {
            "wall_us": (end - start) / calls,
            "device_busy_us": sum(float(e.get("dur", 0)) for e in inside) / calls,
            "kernels": (len(inside) - len(copies)) / calls,
            "memcpys": len(copies) / calls,
            "memcpy_names": sorted({e["name"] for e in copies})[:10],
        }
    out["device_threads"] = sorted({threads.get(k, str(k)) for k in threads if k[0] in device})
    return out


def anatomy(model: str, variants: list[str], calls: int, out: str, method: str) -> dict[str, Any]:
    """Compiles, dumps and traces the variants of one model; returns the summary."""
    table = overhead._variants(model, method)
    unknown = sorted(set(variants) - set(table))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {sorted(table)}")
    hlo, state = {}, {}
    for k in variants:
        fn, args, _ = table[k]
        jitted = fn.fn if isinstance(fn, overhead.Repeat) else fn
        hlo[k] = jitted.lower(*args).compile().as_text()
        state[k] = overhead._copy(args)
        _, state[k] = overhead._time_calls(fn, state[k], 3)  # compile and warm up
    logdir = tempfile.mkdtemp()
    windows = {f"anatomy {model} {k}": k for k in variants}
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
        for name, k in windows.items():
            with jax.profiler.TraceAnnotation(name):
                _, state[k] = overhead._time_calls(table[k][0], state[k], calls)
    found = glob.glob(os.path.join(logdir, "**", "perfetto_trace.json.gz"), recursive=True)
    summary: dict[str, Any] = {
        "hlo": {k: hlo_counts(t) for k, t in hlo.items()},
        "trace_file": None,
    }
    if found:
        dest = os.path.join(out, f"trace_{model}.json.gz")
        shutil.copy(found[0], dest)
        summary["trace_file"] = os.path.basename(dest)
        with gzip.open(found[0], "rt") as f:
            summary["trace"] = trace_summary(json.load(f), windows, calls)
    shutil.rmtree(logdir, ignore_errors=True)
    summary["hlo_text"] = hlo
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cnn", help="comma list of mlp, cnn")
    parser.add_argument("--calls", type=int, default=10, help="traced calls per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list")
    parser.add_argument("--method", default="auto", help="selection method: auto, radix, sort")
    parser.add_argument("--out", help="folder for the summary, HLO and traces")
    parser.add_argument("--count-hlo", help="only print the HLO counts of a saved hlo.tar.gz")
    args = parser.parse_args()
    if args.count_hlo:
        saved = count_saved(args.count_hlo)
        w = max([40, *map(len, saved)])
        print(f"{'':<{w}} " + " ".join(HLO_OPS))
        for name, counts in saved.items():
            print(f"{name:<{w}} " + " ".join(f"{counts[op]:>{len(op)}}" for op in HLO_OPS))
        return
    if not args.out:
        parser.error("--out is required (or --count-hlo)")
    os.makedirs(args.out, exist_ok=True)
    info = overhead.machine()
    print(f"backend {info['backend']} ({info['device_kind']}), jax {info['jax']}")
    results, texts = {}, {}
    for model in args.models.split(","):
        r = anatomy(
            model, [v for v in args.variants.split(",") if v], args.calls, args.out, args.method
        )
        texts[model] = r.pop("hlo_text")
        results[model] = r
        w = max([22, *map(len, r["hlo"])])
        print(
            f"\n{model + ':':<{w + 2}} {'kernels':>8} {'memcpy':>6} {'busy us':>9} {'wall us':>9}"
            "   HLO: " + " ".join(HLO_OPS)
        )
        for k, counts in r["hlo"].items():
            t = r.get("trace", {}).get(k, {})
            print(
                f"  {k:<{w}} {t.get('kernels', float('nan')):8.1f} {t.get('memcpys', float('nan')):6.1f} "
                f"{t.get('device_busy_us', float('nan')):9.1f} {t.get('wall_us', float('nan')):9.1f}"
                "   " + " ".join(f"{counts[op]:>{len(op)}}" for op in HLO_OPS)
            )
    with tarfile.open(os.path.join(args.out, "hlo.tar.gz"), "w:gz") as tar:
        for model, by_variant in texts.items():
            for k, text in by_variant.items():
                data = text.encode()
                member = tarfile.TarInfo(f"{model}/{k.replace(' ', '_')}.hlo.txt")
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    with open(os.path.join(args.out, "anatomy.json"), "w") as f:
        json.dump({"machine": info, "settings": vars(args), "results": results}, f, indent=2)
    print(f"\nwrote {args.out}/anatomy.json, hlo.tar.gz and the traces")


if __name__ == "__main__":
    main()
