//! PyTorch code export.
