# ---- Input preprocessing ------------------------------------------------------
# Class names in label order and the per-channel input normalisation the
# weights were trained with (None when the export had no weights file).
CLASSES = @CLASSES@
MEAN = @MEAN@
STD = @STD@
INPUT_SHAPE = (@CHANNELS@, @HEIGHT@, @WIDTH@)


def preprocess(images, mean=None, std=None):
    """Images → the normalised NCHW float tensor the model expects.

    `images`: a PIL image, a list of them, or a tensor (CHW or NCHW; uint8
    in 0..255 or float in 0..1). Images are converted to the model's channel
    count, resized (bilinear) to INPUT_SHAPE's height × width when they
    differ, scaled to 0..1, then each channel is normalised as
    `(x - mean) / std` with `mean`/`std` (default: MEAN/STD).
    """
    c, h, w = INPUT_SHAPE
    mean = MEAN if mean is None else mean
    std = STD if std is None else std
    if isinstance(images, (list, tuple)) or hasattr(images, "convert"):
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        x = torch.stack([_pil_to_tensor(im, c) for im in items])
    else:
        x = images
        if x.dim() == 3:
            x = x.unsqueeze(0)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.shape[1] != c:
        x = x.mean(dim=1, keepdim=True) if c == 1 else x[:, :1].expand(-1, c, -1, -1)
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - m) / s
    return x


def _pil_to_tensor(image, channels):
    image = image.convert("L" if channels == 1 else "RGB")
    data = torch.tensor(list(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, channels).permute(2, 0, 1).float() / 255.0
