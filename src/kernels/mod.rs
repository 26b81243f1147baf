//! f32 math on ndarray + rayon, forward and backward. Knows nothing of graphs or UI.
