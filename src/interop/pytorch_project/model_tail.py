# ---- Netloom project helpers -------------------------------------------------
# Without weights at export, CLASSES, MEAN and STD above are None: train.py
# measures the normalisation on the training split and stores it with the
# class names in the weights it writes (`netloom_io.load_netloom` returns them).


def load_netloom_weights(path):
    """A @CLASS@ with the weights of a Netloom weights file (Netloom names
    and layouts, e.g. from `netloom train --save`); returns (model, meta)."""
    import netloom_io

    model = @CLASS@()
    meta = netloom_io.load_netloom(model, path)
    return model, meta
