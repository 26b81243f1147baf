#!/usr/bin/env python3
"""Round-trip check of torchvision models through `netloom import` / `netloom export --onnx`.

For each model and each `torch.onnx.export` exporter (the default, dynamo, and the
legacy TorchScript one, `dynamo=False`), both at their defaults and in eval mode:

1. export the model to ONNX (the dynamo exporter writes its weights to an external
   data file, `model.onnx.data`, beside the model; that file is kept as it is),
2. `netloom import model.onnx -o d.json --weights w.safetensors`,
3. compare the design's parameter count (`netloom summary --json --params pytorch`,
   BatchNorm running statistics not counted) with `sum(p.numel() for p in
   model.parameters())` (running statistics are buffers in PyTorch, not parameters),
4. `netloom export d.json --onnx rt.onnx --weights w.safetensors`,
5. run the exported ONNX and the round trip in onnxruntime on the same random input
   and report the largest relative difference, max|rt - orig| / max|orig|
   (target <= 1e-4).

A row passes when the import exits 0 and writes its design, the parameter counts
are equal and the round trip is within the tolerance. A failed step is a row, not
a crash: the table shows how far each model got. The table also gives the ONNX
file's own parameter count (see `onnx_params`): both exporters fold an eval-mode
BatchNorm that follows a conv into that conv at their defaults, so the file holds
C conv biases where torch has 2·C BatchNorm parameters. `netloom import` restores
those BatchNorms by default (conv without bias, then BatchNorm with gamma 1, beta the
folded bias, mean 0, variance 1 - eps: the same function with torch's count);
`--params-against onnx` imports with `--keep-folded-batchnorm` and checks the design
against the file's count instead.

Nothing is downloaded. Models are built with `weights=None` (torchvision's own
initialisation, seed 0), then BatchNorm statistics, BatchNorm affine parameters
and biases are set to seeded random values, so that the graphs look like those of
trained weights (`--torchvision-init` skips this: the dynamo exporter then drops
the all-zero conv biases, and both exporters share equal tensors). GoogLeNet and
Inception-v3 are built as torchvision's pretrained models are
(`aux_logits=False, transform_input=True`), so a pretrained state dict loads into
them strictly.

Pretrained weights, on a machine that has them: save each model's state dict as
`DIR/<model>.pth`, e.g.

    python -c "import torch, torchvision; \\
        torch.save(torchvision.models.resnet18(weights='DEFAULT').state_dict(), 'w/resnet18.pth')"

and run `python tests/torchvision/check.py --state-dicts w`; models with a file
there use it (nothing is randomised), the others keep the random initialisation.

Usage:
    python tests/torchvision/check.py                     # all models, both exporters
    python tests/torchvision/check.py --models resnet18,mobilenet_v2 --exporter dynamo
    python tests/torchvision/check.py --markdown table.md --json table.json

Needs torch, torchvision, onnx, onnxruntime (and onnxscript for the dynamo exporter).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import platform
import shutil
import struct
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# name -> (torchvision constructor name, constructor kwargs, input side)
MODELS: dict[str, tuple[str, dict, int]] = {
    "alexnet": ("alexnet", {}, 224),
    "vgg16": ("vgg16", {}, 224),
    "resnet18": ("resnet18", {}, 224),
    "resnet50": ("resnet50", {}, 224),
    "googlenet": ("googlenet", {"aux_logits": False, "transform_input": True, "init_weights": True}, 224),
    "inception_v3": ("inception_v3", {"aux_logits": False, "transform_input": True, "init_weights": True}, 299),
    "squeezenet1_0": ("squeezenet1_0", {}, 224),
    "densenet121": ("densenet121", {}, 224),
    "mobilenet_v2": ("mobilenet_v2", {}, 224),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}, 224),
    "efficientnet_b0": ("efficientnet_b0", {}, 224),
}

EXPORTERS = ("dynamo", "legacy")
TOLERANCE = 1e-4


def find_netloom(given: str | None) -> str:
    if given:
        return given
    for rel in ("target/release/netloom", "target/debug/netloom"):
        p = REPO / rel
        if p.exists():
            return str(p)
    sys.exit("no netloom binary: build one (cargo build --release) or pass --netloom PATH")


def run(cmd: list[str], timeout: float) -> tuple[int, str, str]:
    """Runs `cmd` at low priority; returns (exit code, stdout, stderr)."""
    try:
        p = subprocess.run(["nice", "-n", "10", *cmd], capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return -1, out, err + f"\nerror: timed out after {timeout:.0f} s"


def first_error(stderr: str) -> str:
    """The first line of `stderr` that reports an error (else "")."""
    for line in stderr.splitlines():
        if line.lower().startswith("error") or "error:" in line.lower():
            return line.strip()
    return ""


def unsupported_lines(stderr: str) -> list[str]:
    """What the importer could not represent, as `X ×N` per operator: from its
    list of deviations (`  - X `node`: what it changes`), or from the older
    `unsupported operator X ×N (left out)` lines."""
    p = "unsupported operator "
    old = [l.strip()[len(p):] for l in stderr.splitlines() if l.strip().startswith(p)]
    if old:
        return old
    counts: dict[str, int] = {}
    for l in stderr.splitlines():
        l = l.strip()
        if l.startswith("- ") and "`" in l:
            what = l[2:].split(" `", 1)[0]
            counts[what] = counts.get(what, 0) + 1
    return [f"{k} ×{v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def warning_lines(stderr: str) -> list[str]:
    return [l.strip() for l in stderr.splitlines() if l.lower().startswith("warning")]


def save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A safetensors file of f32 tensors (8-byte header length, JSON header, data)."""
    import numpy as np

    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load_safetensors(path: Path) -> dict:
    """The f32 tensors of a safetensors file as numpy arrays."""
    import numpy as np

    b = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8 : 8 + n])
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        if v["dtype"] != "F32":
            raise ValueError(f"{path}: `{name}` is {v['dtype']}, not F32")
        lo, hi = v["data_offsets"]
        out[name] = np.frombuffer(b[8 + n + lo : 8 + n + hi], dtype="<f4").reshape(v["shape"])
    return out


def build_model(name: str, state_dicts: Path | None, seed: int, args_torchvision_init: bool = False):
    import torch
    import torchvision

    ctor, kwargs, side = MODELS[name]
    torch.manual_seed(seed)
    model = getattr(torchvision.models, ctor)(weights=None, **kwargs)
    source = f"random (weights=None, seed {seed}{', torchvision init' if args_torchvision_init else ''})"
    sd_path = state_dicts / f"{name}.pth" if state_dicts else None
    if sd_path and sd_path.exists():
        model.load_state_dict(torch.load(sd_path, map_location="cpu", weights_only=True), strict=True)
        source = f"state dict {sd_path}"
    elif not args_torchvision_init:
        perturb_like_trained(model, seed)
    model.eval()
    return model, side, source


def perturb_like_trained(model, seed: int) -> None:
    """Seeded values where torchvision's initialisation leaves constants, so that the
    exported graph looks like one of trained weights: BatchNorm running statistics
    and affine parameters (0/1 otherwise, which hides a mis-read of either) and
    biases (0 otherwise: the dynamo exporter drops an all-zero conv bias, and both
    exporters let equal tensors share one initializer)."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            elif getattr(m, "bias", None) is not None and isinstance(m.bias, torch.nn.Parameter):
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)


def export_onnx(model, x, path: Path, exporter: str) -> str:
    """Exports at the exporter's defaults; returns its console output."""
    import torch

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), str(path))
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False)
    return buf.getvalue()


def onnx_facts(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    ext = sorted(
        {
            e.value
            for t in m.graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL
            for e in t.external_data
            if e.key == "location"
        }
    )
    return {
        "onnx_params": onnx_params(m),
        "batchnorm_nodes": sum(n.op_type == "BatchNormalization" for n in m.graph.node),
        "opset": next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None),
        "operators": sorted({n.op_type for n in m.graph.node}),
        "initializers": len(m.graph.initializer),
        "external_data": ext,
    }


# Operators whose initializer inputs are parameters (input index -> counted), as
# torch counts them: weights and biases, BatchNorm scale and shift (not its running
# statistics), PRelu slopes.
PARAM_INPUTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1),
    "BatchNormalization": (1, 2), "PRelu": (1,),
}


def onnx_params(m) -> int:
    """Parameters the ONNX graph holds, counted as a design with one set of weights
    per layer holds them: each float initializer that a Conv, Gemm, MatMul,
    BatchNormalization (scale, shift) or PRelu reads, or an Add reads beside a
    MatMul's output (a bias), counts once per node reading it, directly or through
    `Identity` nodes (both exporters let parameters with equal values share one
    tensor). Constants of element-wise arithmetic (e.g. `transform_input`'s) are
    not counted. Where an exporter folded BatchNorm into the convolutions this
    differs from torch's count: each folded BatchNorm's 2·C parameters become C
    conv biases (none where the conv already had one). A module applied twice
    counts twice here, once in torch."""
    import onnx

    inits = {t.name: t for t in m.graph.initializer}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    alias = {}  # Identity output -> initializer
    for n in m.graph.node:
        if n.op_type == "Identity" and n.input and n.input[0] in inits:
            alias[n.output[0]] = n.input[0]
    matmul_out = {o for n in m.graph.node if n.op_type == "MatMul" for o in n.output}
    total = 0
    for n in m.graph.node:
        idx = PARAM_INPUTS.get(n.op_type, ())
        if n.op_type == "Add" and any(i in matmul_out for i in n.input):
            idx = (0, 1)
        for i in idx:
            if i < len(n.input):
                t = inits.get(alias.get(n.input[i], n.input[i]))
                if t is not None and t.data_type in floats:
                    total += math.prod(t.dims)
    return total


def ort_run(path: Path, x):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    return np.asarray(sess.run(None, {inp.name: x})[0])


def rel_diff(ref, got) -> float:
    import numpy as np

    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.size != got.size:
        return float("nan")
    got = got.reshape(ref.shape)
    scale = float(np.max(np.abs(ref))) or 1.0
    return float(np.max(np.abs(got - ref))) / scale


def netloom_roundtrip(netloom: str, onnx_path: Path, work: Path, x, ref, timeout: float, import_flags: list[str] | None = None) -> dict:
    """`netloom import` of `onnx_path` into `work`, `summary --json`, `export --onnx`, and
    the round trip's output on `x` in onnxruntime against `ref`. Returns what each step
    did; `stage` is "done" when every step ran, else the step that stopped it (with
    `error` or `import_error`)."""
    import numpy as np

    design, weights, rt = work / "d.json", work / "w.safetensors", work / "rt.onnx"
    strip = lambda s: s.replace(f"{onnx_path.parent}/", "").replace(f"{work}/", "")  # noqa: E731
    rc, out, err = run([netloom, "import", str(onnx_path), "-o", str(design), "--weights", str(weights), *(import_flags or [])], timeout)
    out, err = strip(out), strip(err)
    warns = warning_lines(err)
    res = {
        "import_rc": rc,
        "import_error": first_error(err),
        "import_warnings": len(warns),
        "import_first_warning": warns[0] if warns else "",
        "import_unsupported": unsupported_lines(err),
        "import_stdout": out.strip().splitlines()[-1] if out.strip() else "",
        "design_written": design.exists(),
        "weights_written": weights.exists(),
    }
    if rc != 0 or not design.exists():
        res["stage"] = "import"
        if rc == 0:
            res["import_error"] = res["import_error"] or "exit 0 but no design written"
        return res

    rc, out, err = run([netloom, "summary", "--json", "--params", "pytorch", str(design)], timeout)
    if rc != 0:
        res["stage"] = "summary"
        res["error"] = first_error(err) or (err.strip().splitlines() or [f"exit {rc}"])[0]
        return res
    s = json.loads(out.splitlines()[0])
    res["netloom_params"] = s.get("total_params")
    res["netloom_macs"] = s.get("total_macs")
    layers = s.get("layers") or []
    res["netloom_output_shape"] = layers[-1].get("output_shape") if layers else None

    if not weights.exists():
        res["stage"] = "import"
        res["error"] = "no weights file written"
        return res
    rc, out, err = run([netloom, "export", str(design), "--onnx", str(rt), "--weights", str(weights)], timeout)
    err = strip(err)
    res["export_rc"] = rc
    if rc != 0 or not rt.exists():
        res["stage"] = "export"
        res["error"] = first_error(err) or (err.strip().splitlines() or ["no file written"])[0]
        return res
    try:
        got = ort_run(rt, x)
    except Exception as e:  # noqa: BLE001 - a failed run is a result
        res["stage"] = "onnxruntime (round trip)"
        res["error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        return res
    res["rt_shape"] = list(got.shape)
    d = rel_diff(ref, got)
    if d != d:  # NaN: the outputs have different sizes
        res["stage"] = "compare"
        res["error"] = f"output shape {list(got.shape)} vs {list(np.shape(ref))}"
        return res
    res["max_rel_diff"] = d
    res["top1_same"] = bool(np.argmax(got.reshape(np.shape(ref)), axis=-1).ravel()[0] == np.argmax(ref, axis=-1).ravel()[0])
    res["stage"] = "done"
    return res


def check_one(name: str, exporter: str, args, netloom: str) -> dict:
    import numpy as np
    import torch

    row: dict = {"model": name, "exporter": exporter, "status": "FAIL"}
    work = Path(args.out) / f"{name}-{exporter}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.time()
    try:
        model, side, source = build_model(name, args.state_dicts, args.seed, args.torchvision_init)
        side = args.size or side
        row["weights"] = source
        row["torch_params"] = sum(p.numel() for p in model.parameters())
        row["torch_buffers"] = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
        rng = np.random.default_rng(args.seed)
        x = rng.standard_normal((1, 3, side, side)).astype(np.float32)
        row["input_shape"] = list(x.shape)
        with torch.no_grad():
            ref_torch = model(torch.from_numpy(x)).numpy()

        onnx_path = work / "model.onnx"
        try:
            export_onnx(model, torch.from_numpy(x), onnx_path, exporter)
        except Exception as e:  # noqa: BLE001 - a failed export is a row
            row["stage"] = "torch export"
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            return row
        row.update(onnx_facts(onnx_path))
        row["onnx_bytes"] = sum(f.stat().st_size for f in work.iterdir() if f.name.startswith("model.onnx"))
        ref = ort_run(onnx_path, x)
        row["ref_shape"] = list(ref.shape)
        row["orig_vs_torch"] = rel_diff(ref_torch, ref)

        # Against the file's own count, the convs the exporter folded BatchNorm into stay so.
        flags = ["--keep-folded-batchnorm"] if args.params_against == "onnx" else []
        row.update(netloom_roundtrip(netloom, onnx_path, work, x, ref, args.timeout, flags))
        if row["stage"] != "done":
            return row
        ok = (
            row["import_rc"] == 0
            and row.get("netloom_params") == row["torch_params" if args.params_against == "torch" else "onnx_params"]
            and row["max_rel_diff"] <= TOLERANCE
        )
        row["status"] = "PASS" if ok else "FAIL"
        return row
    except Exception as e:  # noqa: BLE001 - anything else is still a row
        row["stage"] = row.get("stage", "script")
        row["error"] = f"{type(e).__name__}: {e}"
        row["traceback"] = traceback.format_exc()
        return row
    finally:
        row["seconds"] = round(time.time() - t0, 1)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


NOT_WRITTEN = "the imported design has errors, so d.json was not written: "


def fmt_import(r: dict) -> str:
    """Exit code and first error line (the importer's "the imported design has errors,
    so d.json was not written:" shortened to "not written:")."""
    if "import_rc" not in r:
        return f"not run ({r.get('stage', '?')}: {r.get('error', '')})"
    s = f"{r['import_rc']}"
    if r.get("import_error"):
        s += f": {r['import_error'].replace(NOT_WRITTEN, 'not written: ')}"
    elif r.get("import_warnings"):
        s += f" ({r['import_warnings']} warnings; first: {r['import_first_warning']})"
    return s


def fmt_diff(r: dict) -> str:
    d = r.get("max_rel_diff")
    if d is None:
        if r.get("error") and "import_rc" in r:
            return f"{r['stage']}: {r['error']}"
        return "-"
    return f"{d:.2e}"


def table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        np_ = r.get("netloom_params")
        tp = r.get("torch_params")
        op_ = r.get("onnx_params")
        params = f"{np_:,}" if isinstance(np_, int) else "-"
        params += f" / {tp:,}" if isinstance(tp, int) else " / -"
        params += f" / {op_:,}" if isinstance(op_, int) else " / -"
        unsup = "; ".join(r.get("import_unsupported") or []) or "-"
        out.append([r["model"], r["exporter"], fmt_import(r), unsup, params, fmt_diff(r), r["status"]])
    return out


HEADER = [
    "model", "exporter", "import exit code: first error line", "operators left out (importer's list)",
    "params netloom / torch / ONNX file", "max rel diff", "result",
]


def print_table(rows: list[dict]) -> None:
    body = table_rows(rows)
    clip = lambda s: s if len(s) <= 90 else s[:87] + "..."  # noqa: E731
    body = [[clip(c) for c in row] for row in body]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(HEADER)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    print(line(HEADER))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print(line(b))


def markdown(rows: list[dict], meta: dict) -> str:
    esc = lambda s: (s if len(s) <= 240 else s[:237] + "...").replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for b in table_rows(rows):
        lines.append("| " + " | ".join(esc(c) for c in b) + " |")
    counts = []
    for ex in dict.fromkeys(r["exporter"] for r in rows):
        sel = [r for r in rows if r["exporter"] == ex]
        if sel:
            p = sum(r["status"] == "PASS" for r in sel)
            counts.append(f"{ex}: {p} PASS, {len(sel) - p} FAIL")
    head = [
        f"Date: {meta['date']}  ",
        f"Versions: {meta['versions']}  ",
        f"netloom: `{meta['netloom']}`  ",
        f"Command: `{meta['command']}`  ",
        f"Totals: {'; '.join(counts)}",
        "",
    ]
    return "\n".join(head + lines) + "\n"


def versions(torch: bool = True) -> str:
    """Python's version and those of the packages used (those installed, without torch's
    two when `torch` is false)."""
    import importlib

    names = (["torch", "torchvision"] if torch else []) + ["onnx", "onnxruntime", "numpy"]
    parts = [f"Python {platform.python_version()}"]
    for n in names:
        try:
            parts.append(f"{n} {importlib.import_module(n).__version__}")
        except ImportError:
            pass
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--netloom", help="netloom binary (default: target/release/netloom, then target/debug/netloom)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: " + ", ".join(MODELS))
    ap.add_argument("--exporter", choices=["dynamo", "legacy", "both"], default="both")
    ap.add_argument("--out", default=str(REPO / "target" / "torchvision-check"), help="working directory for the ONNX, design and weights files")
    ap.add_argument("--keep", action="store_true", help="keep each model's files in --out (default: deleted after its row)")
    ap.add_argument("--markdown", help="also write the table as Markdown here")
    ap.add_argument("--json", help="also write every row's details as JSON here")
    ap.add_argument("--size", type=int, help="input side for every model (default 224, 299 for Inception-v3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--state-dicts", type=Path, help="folder of <model>.pth state dicts to use instead of random weights")
    ap.add_argument("--torchvision-init", action="store_true",
                    help="keep torchvision's initialisation as it is (zero biases, BatchNorm at 0/1) instead of seeded values")
    ap.add_argument("--params-against", choices=["torch", "onnx"], default="torch",
                    help="a row's parameter check: the design's count equals torch's sum(p.numel()) (default) "
                    "or the ONNX file's count (which differs where the exporter folded BatchNorm; "
                    "imports with --keep-folded-batchnorm)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed to each netloom command")
    args = ap.parse_args(argv)

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    exporters = EXPORTERS if args.exporter == "both" else (args.exporter,)
    netloom = find_netloom(args.netloom)
    import torch

    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    rows = []
    for name in names:
        for ex in exporters:
            print(f"... {name} ({ex})", file=sys.stderr, flush=True)
            r = check_one(name, ex, args, netloom)
            print(f"    {r['status']} in {r['seconds']} s: {fmt_import(r)}; diff {fmt_diff(r)}", file=sys.stderr, flush=True)
            rows.append(r)

    print_table(rows)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(),
        "netloom": netloom,
        "command": "python " + " ".join([os.path.relpath(__file__, REPO), *(argv if argv is not None else sys.argv[1:])]),
        "tolerance": TOLERANCE,
    }
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows, meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0 if all(r["status"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
