#!/usr/bin/env python3
"""Check `pipeblocks plan` against published large-scale training throughput.

Source: Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
Megatron-LM", SC'21, arXiv:2104.04473: Table 1 (weak scaling, 1.7B to 1T parameters) and Table 2
(the PTD-parallelism rows of the 175B and 530B GPT models), measured on Selene (DGX A100 80 GB,
NVLink within a node, 8 HDR InfiniBand links per node), sequence 2048, vocabulary 51200, full
activation recomputation, plain data parallelism, the interleaved 1F1B schedule.

For each row the planner evaluates the published tensor, pipeline and data-parallel degrees
(searching what the paper does not give: the microbatch size where unpublished, the chunks per
device) and its predicted iteration time is turned into the paper's own metric, achieved
teraFLOP/s per GPU counted with the paper's formula (its Equation 3, recomputation included):
`96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) / (time · GPUs)`.

Second source: the Llama Team, "The Llama 3 Herd of Models", arXiv:2407.21783, Table 4: Llama 3
405B on 8192 and 16384 H100s (TP 8, PP 16, DP 64 and 128, sequence 8192, 16M tokens per batch),
measured BF16 MFU 43% and 41%. The paper does not give the microbatch size, recompute or
sharding; the planner chooses them (once with any schedule, once with interleaved 1F1B, what
the paper ran), and its MFU is compared.

Usage: scripts/plan_published.py [--pipeblocks BIN] [--device a100-80gb,eff=..] [--markdown] [--json OUT]
See docs/plan.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ, VOCAB = 2048, 51200

# (label, layers, hidden, heads, tp, pp, gpus, global batch, microbatch size or None,
#  chunks or None, measured teraFLOP/s per GPU)
ROWS = [
    ("Table 1, 1.7B", 24, 2304, 24, 1, 1, 32, 512, None, None, 137),
    ("Table 2, 175B", 96, 12288, 96, 8, 12, 384, 1536, 1, None, 153),
    ("Table 2, 175B", 96, 12288, 96, 8, 12, 768, 1536, 1, None, 149),
    ("Table 2, 175B", 96, 12288, 96, 8, 12, 1536, 1536, 1, None, 141),
    ("Table 2, 530B", 105, 20480, 128, 8, 35, 560, 2240, 1, 3, 171),
    ("Table 2, 530B", 105, 20480, 128, 8, 35, 2240, 2240, 1, 3, 159),
    ("Table 1, 1T", 128, 25600, 160, 8, 64, 3072, 3072, None, None, 163),
]


# (label, gpus, tp, pp, dp, global batch, measured MFU)
LLAMA3 = [
    ("Llama 3 405B, Table 4", 8192, 8, 16, 64, 2048, 0.43),
    ("Llama 3 405B, Table 4", 16384, 8, 16, 128, 2048, 0.41),
]


def paper_flops(batch, layers, hidden):
    return 96 * batch * SEQ * layers * hidden ** 2 * (1 + SEQ / (6 * hidden) + VOCAB / (16 * layers * hidden))


def best_of(cmd, what):
    """The best configuration `pipeblocks plan ... --json` prints, or None after one error line."""
    print(f"{what} ...", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        print(f"error: {' '.join(cmd)}: {out.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads(out.stdout)["configurations"][0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeblocks", default=os.path.join(REPO_ROOT, "target", "release", "pipeblocks"))
    ap.add_argument("--device", default="a100-80gb", help="device for the Megatron-LM rows (default a100-80gb)")
    ap.add_argument("--llama-device", default="h100", help="device for the Llama 3 rows (default h100)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", metavar="OUT")
    a = ap.parse_args()
    if not (os.path.isfile(a.pipeblocks) and os.access(a.pipeblocks, os.X_OK)):
        print(f"error: pipeblocks binary {a.pipeblocks} not found; build it with `cargo build --release` "
              "or pass --pipeblocks BIN", file=sys.stderr)
        return 2
    rows = []
    for label, layers, hidden, heads, tp, pp, gpus, batch, mbs, chunks, measured in ROWS:
        dp = gpus // (tp * pp)
        model = f"layers={layers},hidden={hidden},heads={heads},seq={SEQ},vocab={VOCAB}"
        cmd = [a.pipeblocks, "plan", "--model", model, "--gpus", str(gpus), "--device", a.device,
               "--global-batch", str(batch), "--tp", str(tp), "--pp", str(pp), "--dp", str(dp),
               "--sharding", "ddp", "--recompute", "full", "--top", "1", "--json",
               "--schedule", "interleaved-1f1b" if pp > 1 else "1f1b"]
        if mbs:
            cmd += ["--microbatch-size", str(mbs)]
        if chunks:
            cmd += ["--chunks", str(chunks)]
        best = best_of(cmd, f"{label} on {gpus} GPUs")
        if best is None:
            return 1
        t = best["iteration_seconds"]
        predicted = paper_flops(batch, layers, hidden) / (t * gpus) / 1e12
        rows.append(dict(row=label, gpus=gpus, tp=tp, pp=pp, dp=dp, batch=batch,
                         microbatch_size=best["microbatch_size"], chunks=best["chunks"],
                         iteration_seconds=t, predicted=predicted, measured=measured,
                         error=predicted / measured - 1.0, mfu=best["mfu"], metric="TFLOP/s per GPU",
                         peak_gib=max(best["peak_memory_bytes"]) / 2 ** 30))
    for label, gpus, tp, pp, dp, batch, measured in LLAMA3:
        for schedule in [None, "interleaved-1f1b"]:
            cmd = [a.pipeblocks, "plan", "--model", "llama3-405b", "--gpus", str(gpus), "--device",
                   a.llama_device, "--global-batch", str(batch),
                   "--tp", str(tp), "--pp", str(pp), "--dp", str(dp), "--top", "1", "--json"]
            if schedule:
                cmd += ["--schedule", schedule]
            best = best_of(cmd, f"{label} on {gpus} GPUs ({schedule or 'any schedule'})")
            if best is None:
                return 1
            rows.append(dict(row=f"{label} ({best['schedule']}, {best['recompute']}, {best['sharding']})",
                             gpus=gpus, tp=tp, pp=pp, dp=dp, batch=batch,
                             microbatch_size=best["microbatch_size"], chunks=best["chunks"],
                             iteration_seconds=best["iteration_seconds"], predicted=100 * best["mfu"],
                             measured=100 * measured, error=best["mfu"] / measured - 1.0, mfu=best["mfu"],
                             metric="MFU %", peak_gib=max(best["peak_memory_bytes"]) / 2 ** 30))
    head = ["row", "GPUs", "t", "p", "d", "batch", "b", "chunks", "predicted s", "predicted",
            "measured", "metric", "error"]
    lines = [[r["row"], str(r["gpus"]), str(r["tp"]), str(r["pp"]), str(r["dp"]), str(r["batch"]),
              str(r["microbatch_size"]), str(r["chunks"]), f"{r['iteration_seconds']:.2f}",
              f"{r['predicted']:.1f}", f"{r['measured']:g}", r["metric"], f"{100 * r['error']:+.1f}%"] for r in rows]
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for l in lines:
            print("| " + " | ".join(l) + " |")
    else:
        w = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(x) for h, x in zip(head, w)))
        for l in lines:
            print("  ".join(c.ljust(x) for c, x in zip(l, w)))
    for metric in ["TFLOP/s per GPU", "MFU %"]:
        errs = [abs(r["error"]) for r in rows if r["metric"] == metric]
        signed = [r["error"] for r in rows if r["metric"] == metric]
        print(f"\n{metric}: median |error| {100 * statistics.median(errs):.1f}%, worst {100 * max(errs):.1f}%, "
              f"mean signed {100 * statistics.mean(signed):+.1f}%", end="")
    print()
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
