//! A DenseNet-121-shaped design (as an ONNX import of torchvision's model
//! looks: every dense layer concatenates all earlier feature maps of its
//! block), for layout benchmarks and geometry tests: about 430 layers.

use netloom::graph::blocks::Builder;
use netloom::graph::{Graph, LayerKind, NodeId, Padding};

/// DenseNet-121: growth 32, bottleneck 4×, blocks of 6, 12, 24 and 16 layers.
pub fn densenet121_like() -> Graph {
    let mut g = Graph::new("densenet121-like");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 224, 224, 3);
    let x = b.conv_bn_relu("conv0", x, 64, 7, 2, Padding::symmetric(3));
    let mut x = b.max_pool("pool0", x, 3, 2, Padding::symmetric(1));
    let mut channels = 64;
    for (block, layers) in [6usize, 12, 24, 16].into_iter().enumerate() {
        let mut features: Vec<NodeId> = vec![x];
        for layer in 1..=layers {
            b.prefix = format!("denseblock{}_layer{layer}_", block + 1);
            let input = concat(&mut b, &features);
            let y = b.bn("norm1", input);
            let y = b.relu("relu1", y);
            let y = b.conv("conv1", y, 128, 1, 1, Padding::Valid);
            let y = b.bn("norm2", y);
            let y = b.relu("relu2", y);
            features.push(b.conv("conv2", y, 32, 3, 1, Padding::Same));
        }
        channels += 32 * layers as u32;
        b.prefix = format!("transition{}_", block + 1);
        let all = concat(&mut b, &features);
        if block == 3 {
            b.prefix.clear();
            let y = b.bn("norm5", all);
            x = b.relu("relu5", y);
        } else {
            channels /= 2;
            let y = b.bn("norm", all);
            let y = b.relu("relu", y);
            let y = b.conv("conv", y, channels, 1, 1, Padding::Valid);
            x = b.avg_pool("pool", y, 2, 2, Padding::Valid);
        }
    }
    let x = b.layer("gap", LayerKind::GlobalAvgPool, &[x]);
    let x = b.dense("classifier", x, 1000);
    b.layer("softmax", LayerKind::Softmax, &[x]);
    g
}

fn concat(b: &mut Builder, features: &[NodeId]) -> NodeId {
    match features {
        [one] => *one,
        many => b.layer("concat", LayerKind::Concat, many),
    }
}
