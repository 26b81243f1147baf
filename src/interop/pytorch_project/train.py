"""Trains the Netloom design in model.py with DistributedDataParallel.

    torchrun --nproc_per_node=N train.py --data FOLDER [--epochs E] [--out weights.safetensors]

Everything defaults to Netloom's own run setup (netloom.json → "defaults"):
the image-folder layout and splits, input normalisation, optimizer, learning
rate schedule and seed. Rank 0 prints one line per epoch and a final test
line, all `key=value`, and writes the weights in Netloom's names, layouts
and metadata, so `netloom eval DESIGN --weights OUT --data FOLDER` and the
designer open them. Backend: nccl when CUDA is available, gloo otherwise.
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as model_py  # noqa: E402
import netloom_io  # noqa: E402

M = netloom_io.manifest()
D = M["defaults"]
MASK = (1 << 64) - 1

# ---- Netloom's deterministic RNG (src/data/rng.rs), for identical splits ----


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def mix_seed(seed, parts):
    state, out = splitmix64(seed & MASK)
    for p in parts:
        state ^= ((p * 0xD6E8FEB86659FD93) & MASK) ^ out
        state, out = splitmix64(state)
    return out


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Rng:
    def __init__(self, seed):
        s = []
        sm = seed & MASK
        for _ in range(4):
            sm, v = splitmix64(sm)
            s.append(v)
        if s == [0, 0, 0, 0]:
            s[0] = 1
        self.s = s

    def next_u64(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        if n == 0:
            return 0
        threshold = ((-n) & MASK) % n
        while True:
            m = self.next_u64() * n
            if (m & MASK) >= threshold:
                return m >> 64

    def shuffle(self, xs):
        for i in range(len(xs) - 1, 0, -1):
            j = self.below(i + 1)
            xs[i], xs[j] = xs[j], xs[i]


def stratified_indices(labels, classes, fraction, seed):
    """(kept, held): Netloom's Dataset::stratified_indices."""
    per_class = [[] for _ in range(classes)]
    for i, label in enumerate(labels):
        per_class[label].append(i)
    kept, held = [], []
    for k, members in enumerate(per_class):
        rng = Rng(mix_seed(seed, [0x5EED5917, k]))
        rng.shuffle(members)
        # f32 fraction × count, rounded half away from zero, as in Rust.
        f32 = torch.tensor(fraction, dtype=torch.float32).item()
        take = int(math.floor(f32 * len(members) + 0.5))
        held += members[:take]
        kept += members[take:]
    return sorted(kept), sorted(held)


# ---- image folders (src/data/image_folder.rs) --------------------------------

TRAIN_NAMES = ["train", "training"]
VAL_NAMES = ["val", "valid", "validation"]
TEST_NAMES = ["test", "testing"]


def subdirs(path):
    return sorted(
        e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")
    )


def find_split(path, names, wanted):
    for w in wanted:
        for n in names:
            if n.lower() == w:
                return os.path.join(path, n)
    return None


def files_below(path):
    out = []
    for name in sorted(os.listdir(path)):
        if name.startswith("."):
            continue
        p = os.path.join(path, name)
        if os.path.isdir(p):
            out += files_below(p)
        else:
            out.append(p)
    return out


def decode(files, channels, height, width):
    """Files → (N, C, H, W) float tensor in 0..1 and the kept indices (unreadable files are skipped)."""
    from PIL import Image

    images, kept = [], []
    for i, path in enumerate(files):
        try:
            with Image.open(path) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if im.size != (width, height):
                    im = im.resize((width, height), Image.BILINEAR)
                data = torch.tensor(list(im.tobytes()), dtype=torch.uint8)
        except Exception as e:  # noqa: BLE001 - skipped and reported, as Netloom does
            print(f"note: skipped {path}: {e}", file=sys.stderr)
            continue
        images.append(data.view(height, width, channels).permute(2, 0, 1))
        kept.append(i)
    if not images:
        return torch.zeros(0, channels, height, width), kept
    return torch.stack(images).float() / 255.0, kept


def load_folder(path, val_fraction, test_fraction, seed):
    """Netloom's splits of an image folder: {train, val, test} → (x, y), and the classes."""
    c, h, w = M["input"]["channels"], M["input"]["height"], M["input"]["width"]
    names = subdirs(path)
    train_dir = find_split(path, names, TRAIN_NAMES)
    if train_dir:
        parts = {"train": train_dir}
        for key, wanted in (("val", VAL_NAMES), ("test", TEST_NAMES)):
            d = find_split(path, names, wanted)
            if d:
                parts[key] = d
        classes = sorted({k for d in parts.values() for k in subdirs(d)})
    else:
        parts = {"train": path}
        classes = names
    if len(classes) < 2:
        sys.exit(f"{path}: a classifier needs at least two class folders, found {classes}")
    splits = {}
    for key, d in parts.items():
        files, labels = [], []
        for name in subdirs(d):
            found = files_below(os.path.join(d, name))
            files += found
            labels += [classes.index(name)] * len(found)
        x, kept = decode(files, c, h, w)
        splits[key] = (x, torch.tensor([labels[i] for i in kept], dtype=torch.long))
    # Splits::hold_out: test first (purpose 1), then validation (purpose 2).
    for key, fraction, purpose in (("test", test_fraction, 1), ("val", val_fraction, 2)):
        if key not in splits and fraction > 0:
            x, y = splits["train"]
            kept, held = stratified_indices(
                y.tolist(), len(classes), fraction, mix_seed(seed, [purpose])
            )
            splits[key] = (x[held], y[held])
            splits["train"] = (x[kept], y[kept])
    return splits, classes


def channel_stats(x):
    """Netloom's ChannelStats of a (N, C, H, W) split: population std, 1 when ~0."""
    v = x.double().transpose(0, 1).reshape(x.shape[1], -1)
    mean = v.mean(dim=1)
    var = ((v * v).mean(dim=1) - mean * mean).clamp(min=0)
    std = var.sqrt().float()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return mean.float().tolist(), std.tolist()


# ---- training ----------------------------------------------------------------


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="image folder: FOLDER/<class>/* or FOLDER/{train,val,test}/<class>/*")
    p.add_argument("--epochs", type=int, default=D["epochs"])
    p.add_argument("--batch", type=int, default=D["batch"], help="global batch, split over the processes")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=D["optimizer"])
    p.add_argument("--lr", type=float, default=None, help=f"default {D['lr_adam']} (Adam) / {D['lr_sgd']} (SGD)")
    p.add_argument("--momentum", type=float, default=D["momentum"], help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=D["weight_decay"], help="L2 on conv and dense weights")
    p.add_argument("--seed", type=int, default=M["seed"] if M.get("seed") is not None else D["seed"])
    p.add_argument("--val-fraction", type=float,
                   default=M["val_fraction"] if M.get("val_fraction") is not None else D["val_fraction"])
    p.add_argument("--test-fraction", type=float, default=D["test_fraction"])
    p.add_argument("--init", default=None, help="start from a Netloom weights file (default: initial.safetensors if present)")
    p.add_argument("--out", default="weights.safetensors", help="Netloom weights file to write")
    p.add_argument("--no-precise-bn", action="store_true", help="keep the moving-average BatchNorm statistics")
    return p.parse_args()


def accuracy(net, x, y, mean, std, device, batch=256):
    net.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = normalise(x[i:i + batch], mean, std).to(device)
            yb = y[i:i + batch].to(device)
            logits = net(xb)
            loss_sum += criterion(logits, yb, reduction="sum").item()
            correct += (predict(logits) == yb).sum().item()
    n = max(len(x), 1)
    return correct / n, loss_sum / n


def normalise(x, mean, std):
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def criterion(logits, y, reduction="mean"):
    if logits.shape[1] == 1:  # one sigmoid unit: binary
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.float(), reduction=reduction)
    return F.cross_entropy(logits, y, reduction=reduction)


def predict(logits):
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def precise_bn(net, x, mean, std, device, batch, images=1024):
    """Recomputes BatchNorm running statistics over training images (Netloom's precise BN)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    with torch.no_grad():
        for i in range(0, min(len(x), images), batch):
            net(normalise(x[i:i + batch], mean, std).to(device))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    net.eval()
    return True


def main():
    args = parse()
    distributed = "WORLD_SIZE" in os.environ
    cuda = torch.cuda.is_available()
    if distributed:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", 0))
    else:
        rank, world, local = 0, 1, 0
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)

    splits, classes = load_folder(args.data, args.val_fraction, args.test_fraction, args.seed)
    if M.get("classes") and M["classes"] != classes:
        sys.exit(f"the design was trained on classes {M['classes']}, but {args.data} has {classes}")
    outputs = M["outputs"]
    if outputs != len(classes) and not (outputs == 1 and len(classes) == 2):
        sys.exit(
            f"the design has {outputs} outputs but {args.data} has {len(classes)} classes; "
            f"resize its final Dense layer to {len(classes)} units in Netloom and export again"
        )
    x_train, y_train = splits["train"]
    if M.get("mean") and M.get("std"):
        mean, std = M["mean"], M["std"]
    else:
        mean, std = channel_stats(x_train)

    net = getattr(model_py, M["module_class"])()
    init = args.init or (M.get("initial_weights") if M.get("initial_weights") and
                         os.path.exists(os.path.join(netloom_io.HERE, M["initial_weights"])) else None)
    if init:
        path = init if os.path.exists(init) else os.path.join(netloom_io.HERE, init)
        meta = netloom_io.load_netloom(net, path)
        if meta.get("mean") and meta.get("std"):
            mean, std = meta["mean"], meta["std"]
    net.to(device)
    ddp = DistributedDataParallel(net, device_ids=[local] if cuda else None) if distributed else net

    decayed = set(M["decayed"])
    params = dict(net.named_parameters())
    groups = [
        {"params": [p for n, p in params.items() if n in decayed], "weight_decay": args.weight_decay},
        {"params": [p for n, p in params.items() if n not in decayed], "weight_decay": 0.0},
    ]
    if args.optimizer == "adam":
        lr = args.lr if args.lr is not None else D["lr_adam"]
        opt = torch.optim.Adam(groups, lr=lr, betas=tuple(D["adam_betas"]), eps=D["adam_eps"])
    else:
        lr = args.lr if args.lr is not None else D["lr_sgd"]
        opt = torch.optim.SGD(groups, lr=lr, momentum=args.momentum, nesterov=D["nesterov"])

    train_set = TensorDataset(normalise(x_train, mean, std), y_train)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    per_process = max(1, args.batch // world)
    loader = DataLoader(train_set, batch_size=per_process, sampler=sampler)
    if rank == 0:
        print(
            f"netloom-project start design={M['design']} world={world} device={device.type} "
            f"train={len(x_train)} val={len(splits.get('val', ([],))[0])} test={len(splits.get('test', ([],))[0])} "
            f"classes={len(classes)} batch={per_process}x{world} optimizer={args.optimizer} lr={lr}",
            flush=True,
        )
    steps = 0
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        ddp.train()
        total = torch.zeros(2, dtype=torch.float64, device=device)
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad(set_to_none=True)
            loss = criterion(ddp(xb), yb)
            loss.backward()
            opt.step()
            steps += 1
            total += torch.tensor([loss.item() * len(xb), len(xb)], dtype=torch.float64, device=device)
        if distributed:
            dist.all_reduce(total)
        if rank == 0:
            line = f"netloom-project epoch={epoch} loss={(total[0] / total[1]).item():.6f}"
            if "val" in splits and len(splits["val"][0]):
                acc, vloss = accuracy(net, *splits["val"], mean, std, device)
                line += f" val_accuracy={acc:.6f} val_loss={vloss:.6f} val_images={len(splits['val'][0])}"
            print(line, flush=True)

    if rank == 0:
        precise = not args.no_precise_bn and precise_bn(net, x_train, mean, std, device, args.batch)
        if "test" in splits and len(splits["test"][0]):
            acc, tloss = accuracy(net, *splits["test"], mean, std, device)
            print(
                f"netloom-project test accuracy={acc:.6f} loss={tloss:.6f} images={len(splits['test'][0])}",
                flush=True,
            )
        meta = {
            "design": M["design"],
            "classes": classes,
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
            "seed": args.seed,
            "val_fraction": args.val_fraction,
            "epoch": args.epochs,
            "optimizer_step": steps,
            "precise_bn": bool(precise),
        }
        netloom_io.save_netloom(net, args.out, meta)
        print(f"netloom-project saved={json.dumps(os.path.abspath(args.out))}", flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
