//! Datasets, readers and augmentation that feed training.
