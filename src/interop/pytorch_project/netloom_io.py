"""Netloom weights files <-> PyTorch state dicts, by the layout table in netloom.json.

Netloom stores weights as safetensors, one F32 tensor per parameter named
`{layer}.{role}` in Netloom layouts (conv HWIO, dense [in, out], vectors
after a Flatten in H·W·C order) with run facts (class names, normalisation,
split seed) as JSON under the metadata key `netloom`, and the design they
belong to under `netloom.design`. The table was written
by Netloom from its own layout conversion; this file only applies it.
Only torch is needed (the `safetensors` package is not).
"""

import json
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def manifest(path=None):
    with open(path or os.path.join(HERE, "netloom.json"), encoding="utf-8") as f:
        return json.load(f)


# ---- safetensors, pure Python ------------------------------------------------

def read_safetensors(path):
    """(tensors: name -> float32 tensor, metadata: dict of str)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}; only F32 is read")
        a, b = info["data_offsets"]
        buf = bytearray(data[base + a:base + b])
        t = torch.frombuffer(buf, dtype=torch.float32) if buf else torch.zeros(0)
        out[name] = t.reshape(info["shape"]).clone()
    return out, meta


def _bytes(t):
    t = t.detach().to("cpu", torch.float32).contiguous().reshape(-1)
    try:
        return t.numpy().tobytes()
    except Exception:  # torch built without numpy
        return struct.pack(f"<{t.numel()}f", *t.tolist())


def write_safetensors(path, tensors, metadata=None):
    """Writes name -> tensor (as F32, sorted by name) with str metadata, atomically."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        b = _bytes(tensors[name])
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ---- layouts -----------------------------------------------------------------

def to_netloom(state_dict, table=None):
    """A PyTorch state dict -> Netloom tensors (names and layouts)."""
    table = table if table is not None else manifest()["tensors"]
    out = {}
    for e in table:
        t = state_dict[e["torch"]].detach().to("cpu", torch.float32)
        if "gather" in e:
            t = t.reshape(-1)[torch.tensor(e["gather"], dtype=torch.long)]
        else:
            t = t.permute(*e["permute"]) if e["permute"] else t
            if "rows" in e:
                t = t[torch.tensor(e["rows"], dtype=torch.long)]
        out[e["netloom"]] = t.contiguous().reshape(e["netloom_shape"])
    return out


def from_netloom(tensors, table=None):
    """Netloom tensors -> PyTorch state-dict entries (the inverse of to_netloom)."""
    table = table if table is not None else manifest()["tensors"]
    out = {}
    for e in table:
        if e["netloom"] not in tensors:
            continue
        t = tensors[e["netloom"]].to(torch.float32).reshape(e["netloom_shape"])
        if "gather" in e:
            flat = torch.empty(t.numel())
            flat[torch.tensor(e["gather"], dtype=torch.long)] = t.reshape(-1)
            out[e["torch"]] = flat.reshape(e["torch_shape"])
            continue
        if "rows" in e:
            inverse = torch.empty(len(e["rows"]), dtype=torch.long)
            inverse[torch.tensor(e["rows"], dtype=torch.long)] = torch.arange(len(e["rows"]))
            t = t[inverse]
        if e["permute"]:
            back = [0] * len(e["permute"])
            for k, a in enumerate(e["permute"]):
                back[a] = k
            t = t.permute(*back)
        out[e["torch"]] = t.contiguous().reshape(e["torch_shape"])
    return out


def save_netloom(model, path, meta, project=None):
    """Writes `model`'s weights as a Netloom weights file with `meta` (a dict of
    Netloom's WeightsMeta fields) under the `netloom` metadata key, and the
    design they belong to (netloom.json's `design_file`) under its key, as
    Netloom stores a run's trained design."""
    m = model.module if hasattr(model, "module") else model
    project = project or manifest()
    metadata = {"netloom": json.dumps(meta)}
    if project.get("design_file"):
        metadata[project["design_key"]] = project["design_file"]
    write_safetensors(path, to_netloom(m.state_dict(), project["tensors"]), metadata)


def load_netloom(model, path, strict=True):
    """Loads a Netloom weights file into `model`; returns its metadata (dict)."""
    tensors, meta = read_safetensors(path)
    sd = from_netloom(tensors)
    missing = [e["torch"] for e in manifest()["tensors"] if e["torch"] not in sd]
    if strict and missing:
        raise KeyError(f"{path} lacks tensors for {', '.join(missing)}")
    m = model.module if hasattr(model, "module") else model
    m.load_state_dict(sd, strict=False)
    return json.loads(meta["netloom"]) if "netloom" in meta else {}
