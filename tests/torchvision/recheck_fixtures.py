#!/usr/bin/env python3
"""Runs a netloom binary over the committed ONNX fixtures (tests/fixtures/onnx/) without
torch: `netloom import`, `summary --json`, `export --onnx`, and the round trip in
onnxruntime against the expected output saved beside each fixture. Prints a table;
`--record` writes the results into MANIFEST.json's `netloom_today` entries.

    python tests/torchvision/recheck_fixtures.py [--netloom PATH] [--only a,b] [--markdown F] [--record]

Needs numpy and onnxruntime only. A row passes when the import exits 0, the design
holds the file's own parameter count (`onnx_params`; the import runs with
`--keep-folded-batchnorm`, so convs an exporter folded BatchNorm into stay as the file
has them; `tests/interop_onnx_import.rs` checks the default, restored import against
torch's count) and the round trip is within 1e-4
(max |rt - expected| / max |expected|). Exits 0 only when every row passes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check  # noqa: E402  (same folder: shared helpers)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--netloom", help="netloom binary (default: target/release/netloom, then target/debug/netloom)")
    ap.add_argument("--dir", type=Path, default=check.REPO / "tests" / "fixtures" / "onnx")
    ap.add_argument("--only", help="comma-separated fixture names (architecture keys) or file names")
    ap.add_argument("--markdown", help="also write the table as Markdown here")
    ap.add_argument("--record", action="store_true", help="write the results into MANIFEST.json (netloom_today)")
    ap.add_argument("--netloom-label", help="with --record: how the manifest names the binary (default: its path)")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args(argv)
    netloom = check.find_netloom(args.netloom)
    manifest_path = args.dir / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    only = set(args.only.split(",")) if args.only else None

    rows = []
    for e in manifest["fixtures"]:
        if only and e["architecture_key"] not in only and e["file"] not in only:
            continue
        io = check.load_safetensors(args.dir / e["io_file"])
        with tempfile.TemporaryDirectory() as tmp:
            # The file's own count: convs with a folded BatchNorm stay as the file has them.
            res = check.netloom_roundtrip(netloom, args.dir / e["file"], Path(tmp), io["input"], io["expected"],
                                          args.timeout, ["--keep-folded-batchnorm"])
        ok = (
            res["stage"] == "done"
            and res["import_rc"] == 0
            and res.get("netloom_params") == e["onnx_params"]
            and res["max_rel_diff"] <= check.TOLERANCE
        )
        if args.record:
            e["netloom_today"] = res
        rows.append({
            "model": e["file"], "exporter": e["exporter"], "torch_params": e["torch_params"],
            "onnx_params": e["onnx_params"], "status": "PASS" if ok else "FAIL", **res,
        })
        print(f"{rows[-1]['status']} {e['file']}: {check.fmt_import(res)}; {check.fmt_diff(res)}", file=sys.stderr)

    check.print_table(rows)
    passed = sum(r["status"] == "PASS" for r in rows)
    print(f"{passed} passed, {len(rows) - passed} failed")
    if args.markdown:
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "versions": check.versions(torch=False),
            "netloom": args.netloom_label or netloom,
            "command": "python tests/torchvision/recheck_fixtures.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        Path(args.markdown).write_text(check.markdown(rows, meta))
    if args.record:
        manifest["netloom"] = args.netloom_label or netloom
        manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
