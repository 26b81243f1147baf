//! Building designs in code: a small builder, the block templates the palette
//! inserts (VGG stage, ResNet blocks, Inception modules), and the preset
//! architectures shipped in `presets/`.

use super::{Graph, LayerKind, NodeId, Padding, layout};

/// Appends wired layers to a graph. Names are made unique automatically, so
/// templates can be inserted several times.
pub struct Builder<'g> {
    pub graph: &'g mut Graph,
    /// Prepended to every layer name (e.g. `res2a_`).
    pub prefix: String,
}

impl<'g> Builder<'g> {
    pub fn new(graph: &'g mut Graph) -> Self {
        Builder {
            graph,
            prefix: String::new(),
        }
    }

    /// Adds `kind` named `prefix + name`, fed by `inputs` in order.
    pub fn layer(&mut self, name: &str, kind: LayerKind, inputs: &[NodeId]) -> NodeId {
        let name = self.graph.unique_name(&format!("{}{name}", self.prefix));
        let id = match self.graph.add_node(name, kind, [0.0, 0.0]) {
            Ok(id) => id,
            Err(_) => unreachable!("unique_name returns a free, non-empty name"),
        };
        for (i, &from) in inputs.iter().enumerate() {
            // Fresh node, fresh edges: cannot cycle or double-feed.
            let _ = self.graph.connect(from, id, i);
        }
        id
    }

    /// Where the next layer's id will be: pass it to [`Builder::group_since`].
    pub fn mark(&self) -> usize {
        self.graph.id_capacity()
    }

    /// Groups every layer added since `mark` as `name` (made unique). A
    /// builder's layers form a contiguous block, so this cannot fail on
    /// them; if it would, no group is made.
    pub fn group_since(&mut self, name: &str, mark: usize) -> Option<usize> {
        let members: Vec<NodeId> = self
            .graph
            .node_ids()
            .filter(|id| id.index() >= mark)
            .collect();
        let name = self.graph.unique_group_name(name);
        self.graph.add_group(name, members).ok()
    }

    pub fn input(&mut self, name: &str, h: u32, w: u32, c: u32) -> NodeId {
        self.layer(
            name,
            LayerKind::Input {
                height: h,
                width: w,
                channels: c,
            },
            &[],
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv_full(
        &mut self,
        name: &str,
        from: NodeId,
        filters: u32,
        kernel: u32,
        stride: u32,
        padding: Padding,
        groups: u32,
    ) -> NodeId {
        self.layer(
            name,
            LayerKind::Conv2d {
                filters,
                kernel: [kernel, kernel],
                stride: [stride, stride],
                padding,
                groups,
                bias: true,
                dilation: [1, 1],
            },
            &[from],
        )
    }

    pub fn conv(
        &mut self,
        name: &str,
        from: NodeId,
        filters: u32,
        kernel: u32,
        stride: u32,
        padding: Padding,
    ) -> NodeId {
        self.conv_full(name, from, filters, kernel, stride, padding, 1)
    }

    pub fn bn(&mut self, name: &str, from: NodeId) -> NodeId {
        self.layer(
            name,
            LayerKind::BatchNorm {
                epsilon: 1e-3,
                momentum: 0.9,
            },
            &[from],
        )
    }

    pub fn relu(&mut self, name: &str, from: NodeId) -> NodeId {
        self.layer(name, LayerKind::Relu, &[from])
    }

    fn pool(&mut self, name: &str, from: NodeId, max: bool, k: u32, s: u32, p: Padding) -> NodeId {
        let (kernel, stride) = ([k, k], [s, s]);
        let kind = if max {
            LayerKind::MaxPool2d {
                kernel,
                stride,
                padding: p,
                ceil_mode: false,
            }
        } else {
            LayerKind::AvgPool2d {
                kernel,
                stride,
                padding: p,
                ceil_mode: false,
                include_padding: false,
            }
        };
        self.layer(name, kind, &[from])
    }

    pub fn max_pool(&mut self, name: &str, from: NodeId, k: u32, s: u32, p: Padding) -> NodeId {
        self.pool(name, from, true, k, s, p)
    }

    pub fn avg_pool(&mut self, name: &str, from: NodeId, k: u32, s: u32, p: Padding) -> NodeId {
        self.pool(name, from, false, k, s, p)
    }

    /// Max pool with Caffe's ceil rounding, as GoogLeNet uses.
    pub fn max_pool_ceil(&mut self, name: &str, from: NodeId, k: u32, s: u32) -> NodeId {
        self.layer(
            name,
            LayerKind::MaxPool2d {
                kernel: [k, k],
                stride: [s, s],
                padding: Padding::Valid,
                ceil_mode: true,
            },
            &[from],
        )
    }

    pub fn dense(&mut self, name: &str, from: NodeId, units: u32) -> NodeId {
        self.layer(name, LayerKind::Dense { units, bias: true }, &[from])
    }

    pub fn zero_pad(&mut self, name: &str, from: NodeId, p: u32) -> NodeId {
        self.layer(name, LayerKind::ZeroPad2d { padding: [p; 4] }, &[from])
    }

    /// Conv → BatchNorm → ReLU.
    pub fn conv_bn_relu(
        &mut self,
        name: &str,
        from: NodeId,
        filters: u32,
        kernel: u32,
        stride: u32,
        padding: Padding,
    ) -> NodeId {
        let c = self.conv(name, from, filters, kernel, stride, padding);
        let b = self.bn(&format!("{name}_bn"), c);
        self.relu(&format!("{name}_relu"), b)
    }
}

/// VGG stage: `convs` 3×3 same convs with ReLU, then a 2×2/2 max pool.
pub fn vgg_stage(b: &mut Builder, from: NodeId, filters: u32, convs: usize) -> NodeId {
    let mut x = from;
    for i in 1..=convs {
        let c = b.conv(&format!("conv{i}"), x, filters, 3, 1, Padding::Same);
        x = b.relu(&format!("conv{i}_relu"), c);
    }
    b.max_pool("pool", x, 2, 2, Padding::Valid)
}

/// ResNet v1 bottleneck identity block (Keras ResNet50): 1×1 → k×k → 1×1,
/// each with BatchNorm, the input added back before the last ReLU.
pub fn resnet_identity_block(
    b: &mut Builder,
    from: NodeId,
    kernel: u32,
    filters: [u32; 3],
) -> NodeId {
    let x = b.conv_bn_relu("2a", from, filters[0], 1, 1, Padding::Valid);
    let x = b.conv_bn_relu("2b", x, filters[1], kernel, 1, Padding::Same);
    let x = b.conv("2c", x, filters[2], 1, 1, Padding::Valid);
    let x = b.bn("2c_bn", x);
    let sum = b.layer("add", LayerKind::Add, &[x, from]);
    b.relu("out", sum)
}

/// ResNet v1 bottleneck convolutional block: like the identity block but the
/// shortcut is a strided 1×1 projection so the shapes match at the Add.
pub fn resnet_conv_block(
    b: &mut Builder,
    from: NodeId,
    kernel: u32,
    filters: [u32; 3],
    stride: u32,
) -> NodeId {
    let x = b.conv_bn_relu("2a", from, filters[0], 1, stride, Padding::Valid);
    let x = b.conv_bn_relu("2b", x, filters[1], kernel, 1, Padding::Same);
    let x = b.conv("2c", x, filters[2], 1, 1, Padding::Valid);
    let x = b.bn("2c_bn", x);
    let s = b.conv("1", from, filters[2], 1, stride, Padding::Valid);
    let s = b.bn("1_bn", s);
    let sum = b.layer("add", LayerKind::Add, &[x, s]);
    b.relu("out", sum)
}

/// Basic (two 3×3 convs) residual block as in ResNet-18/34 and resnet-mini.
/// With `stride > 1` the shortcut becomes a 1×1 strided projection with BN.
pub fn basic_residual_block(b: &mut Builder, from: NodeId, filters: u32, stride: u32) -> NodeId {
    let x = b.conv_bn_relu("a", from, filters, 3, stride, Padding::Same);
    let x = b.conv("b", x, filters, 3, 1, Padding::Same);
    let x = b.bn("b_bn", x);
    let shortcut = if stride > 1 {
        let s = b.conv("proj", from, filters, 1, stride, Padding::Valid);
        b.bn("proj_bn", s)
    } else {
        from
    };
    let sum = b.layer("add", LayerKind::Add, &[x, shortcut]);
    b.relu("out", sum)
}

/// Inception module without reductions: 1×1, 3×3, 5×5 convs and a 3×3 max
/// pool side by side, concatenated along channels.
pub fn inception_naive(b: &mut Builder, from: NodeId, f1: u32, f3: u32, f5: u32) -> NodeId {
    let a = b.conv("1x1", from, f1, 1, 1, Padding::Same);
    let a = b.relu("1x1_relu", a);
    let c = b.conv("3x3", from, f3, 3, 1, Padding::Same);
    let c = b.relu("3x3_relu", c);
    let d = b.conv("5x5", from, f5, 5, 1, Padding::Same);
    let d = b.relu("5x5_relu", d);
    let p = b.max_pool("pool", from, 3, 1, Padding::Same);
    b.layer("concat", LayerKind::Concat, &[a, c, d, p])
}

/// Filter counts of an Inception module with 1×1 bottlenecks (GoogLeNet table 1).
#[derive(Clone, Copy, Debug)]
pub struct InceptionFilters {
    pub f1: u32,
    pub f3_reduce: u32,
    pub f3: u32,
    pub f5_reduce: u32,
    pub f5: u32,
    pub pool_proj: u32,
}

/// Inception module with 1×1 bottlenecks before the 3×3 and 5×5 convs and a
/// 1×1 projection after the pool (GoogLeNet).
pub fn inception_bottleneck(b: &mut Builder, from: NodeId, f: InceptionFilters) -> NodeId {
    let a = b.conv("1x1", from, f.f1, 1, 1, Padding::Same);
    let a = b.relu("1x1_relu", a);
    let c = b.conv("3x3_reduce", from, f.f3_reduce, 1, 1, Padding::Same);
    let c = b.relu("3x3_reduce_relu", c);
    let c = b.conv("3x3", c, f.f3, 3, 1, Padding::Same);
    let c = b.relu("3x3_relu", c);
    let d = b.conv("5x5_reduce", from, f.f5_reduce, 1, 1, Padding::Same);
    let d = b.relu("5x5_reduce_relu", d);
    let d = b.conv("5x5", d, f.f5, 5, 1, Padding::Same);
    let d = b.relu("5x5_relu", d);
    let p = b.max_pool("pool", from, 3, 1, Padding::Same);
    let p = b.conv("pool_proj", p, f.pool_proj, 1, 1, Padding::Same);
    let p = b.relu("pool_proj_relu", p);
    b.layer("concat", LayerKind::Concat, &[a, c, d, p])
}

/// A preset: its file stem and one line saying what it is.
pub struct Preset {
    pub stem: &'static str,
    pub description: &'static str,
    pub build: fn() -> Graph,
}

/// Every shipped architecture, in menu order.
pub fn presets() -> Vec<Preset> {
    vec![
        Preset {
            stem: "resnet-mini",
            description: "Small ResNet for 64×64×3 images that trains in minutes on a CPU",
            build: resnet_mini,
        },
        Preset {
            stem: "lenet5",
            description: "LeNet-5 (modern: ReLU-free costs, max pools, 10-way dense)",
            build: lenet5,
        },
        Preset {
            stem: "alexnet",
            description: "AlexNet as in the paper, with two-group conv2/4/5, 227×227×3",
            build: alexnet,
        },
        Preset {
            stem: "vgg16",
            description: "VGG-16, 224×224×3, 1000 classes",
            build: vgg16,
        },
        Preset {
            stem: "resnet50",
            description: "Keras ResNet50 v1, 224×224×3, 1000 classes",
            build: || resnet50("resnet50", 224, 1000, false),
        },
        Preset {
            stem: "resnet50-signs",
            description: "The course's ResNet-50 for 64×64×3 SIGNS, 6 classes",
            build: || resnet50("resnet50-signs", 64, 6, true),
        },
        Preset {
            stem: "googlenet",
            description: "GoogLeNet (Inception v1) as in the paper, no auxiliary heads",
            build: googlenet,
        },
        Preset {
            stem: "happy-model",
            description: "The course's Happy House binary classifier",
            build: happy_model,
        },
        Preset {
            stem: "inception-naive",
            description: "A 5×5 conv of 32 filters on 28×28×192: 120M multiplies",
            build: inception_5x5_naive,
        },
        Preset {
            stem: "inception-bottleneck",
            description: "The same 5×5 conv behind a 16-channel 1×1 bottleneck: 12.4M multiplies",
            build: inception_5x5_bottleneck,
        },
        Preset {
            stem: "inception-module-naive",
            description: "Full naive Inception module on 28×28×192",
            build: inception_module_naive,
        },
        Preset {
            stem: "inception-module-bottleneck",
            description: "Full Inception module with 1×1 bottlenecks (GoogLeNet 3a) on 28×28×192",
            build: inception_module_bottleneck,
        },
        Preset {
            stem: "vgg-block",
            description: "One VGG stage: two 3×3 convs of 64 and a max pool",
            build: vgg_block,
        },
        Preset {
            stem: "resnet-identity-block",
            description: "ResNet-50 identity block on 56×56×256",
            build: resnet_identity_block_preset,
        },
        Preset {
            stem: "resnet-conv-block",
            description: "ResNet-50 convolutional block with a strided 1×1 projection shortcut",
            build: resnet_conv_block_preset,
        },
    ]
}

fn finish(mut g: Graph) -> Graph {
    layout::auto_layout(&mut g);
    g
}

fn classifier_head(b: &mut Builder, from: NodeId, classes: u32) -> NodeId {
    let d = b.dense("fc", from, classes);
    b.layer("softmax", LayerKind::Softmax, &[d])
}

pub fn resnet_mini() -> Graph {
    let mut g = Graph::new("resnet-mini");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 64, 64, 3);
    let x = b.conv_bn_relu("stem", x, 32, 3, 1, Padding::Same);
    let x = b.max_pool("stem_pool", x, 2, 2, Padding::Valid);
    let mut x = x;
    for (block, (filters, stride)) in [(32, 1), (64, 2), (64, 1)].into_iter().enumerate() {
        let name = format!("block{}", block + 1);
        b.prefix = format!("{name}_");
        let mark = b.mark();
        x = basic_residual_block(&mut b, x, filters, stride);
        b.group_since(&name, mark);
    }
    b.prefix.clear();
    let x = b.layer("gap", LayerKind::GlobalAvgPool, &[x]);
    classifier_head(&mut b, x, 6);
    finish(g)
}

pub fn lenet5() -> Graph {
    let mut g = Graph::new("lenet5");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 32, 32, 1);
    let x = b.conv("c1", x, 6, 5, 1, Padding::Valid);
    let x = b.relu("c1_relu", x);
    let x = b.max_pool("s2", x, 2, 2, Padding::Valid);
    let x = b.conv("c3", x, 16, 5, 1, Padding::Valid);
    let x = b.relu("c3_relu", x);
    let x = b.max_pool("s4", x, 2, 2, Padding::Valid);
    let x = b.layer("flatten", LayerKind::Flatten, &[x]);
    let x = b.dense("c5", x, 120);
    let x = b.relu("c5_relu", x);
    let x = b.dense("f6", x, 84);
    let x = b.relu("f6_relu", x);
    classifier_head(&mut b, x, 10);
    finish(g)
}

pub fn alexnet() -> Graph {
    let mut g = Graph::new("alexnet");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 227, 227, 3);
    let x = b.conv("conv1", x, 96, 11, 4, Padding::Valid);
    let x = b.relu("conv1_relu", x);
    let x = b.max_pool("pool1", x, 3, 2, Padding::Valid);
    let x = b.conv_full("conv2", x, 256, 5, 1, Padding::symmetric(2), 2);
    let x = b.relu("conv2_relu", x);
    let x = b.max_pool("pool2", x, 3, 2, Padding::Valid);
    let x = b.conv("conv3", x, 384, 3, 1, Padding::symmetric(1));
    let x = b.relu("conv3_relu", x);
    let x = b.conv_full("conv4", x, 384, 3, 1, Padding::symmetric(1), 2);
    let x = b.relu("conv4_relu", x);
    let x = b.conv_full("conv5", x, 256, 3, 1, Padding::symmetric(1), 2);
    let x = b.relu("conv5_relu", x);
    let x = b.max_pool("pool5", x, 3, 2, Padding::Valid);
    let x = b.layer("flatten", LayerKind::Flatten, &[x]);
    let x = b.dense("fc6", x, 4096);
    let x = b.relu("fc6_relu", x);
    let x = b.layer("fc6_dropout", LayerKind::Dropout { rate: 0.5 }, &[x]);
    let x = b.dense("fc7", x, 4096);
    let x = b.relu("fc7_relu", x);
    let x = b.layer("fc7_dropout", LayerKind::Dropout { rate: 0.5 }, &[x]);
    classifier_head(&mut b, x, 1000);
    finish(g)
}

pub fn vgg16() -> Graph {
    let mut g = Graph::new("vgg16");
    let mut b = Builder::new(&mut g);
    let mut x = b.input("input", 224, 224, 3);
    for (stage, (filters, convs)) in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
        .into_iter()
        .enumerate()
    {
        let name = format!("block{}", stage + 1);
        b.prefix = format!("{name}_");
        let mark = b.mark();
        x = vgg_stage(&mut b, x, filters, convs);
        b.group_since(&name, mark);
    }
    b.prefix.clear();
    let x = b.layer("flatten", LayerKind::Flatten, &[x]);
    let x = b.dense("fc1", x, 4096);
    let x = b.relu("fc1_relu", x);
    let x = b.dense("fc2", x, 4096);
    let x = b.relu("fc2_relu", x);
    classifier_head(&mut b, x, 1000);
    finish(g)
}

/// ResNet-50 v1. `course` selects the course's 64×64 variant (no stem
/// max-pool padding, 2×2 average pool + flatten instead of global pooling).
pub fn resnet50(name: &str, size: u32, classes: u32, course: bool) -> Graph {
    let mut g = Graph::new(name);
    let mut b = Builder::new(&mut g);
    let x = b.input("input", size, size, 3);
    let x = b.zero_pad("conv1_pad", x, 3);
    let x = b.conv_bn_relu("conv1", x, 64, 7, 2, Padding::Valid);
    let x = if course {
        b.max_pool("pool1", x, 3, 2, Padding::Valid)
    } else {
        let x = b.zero_pad("pool1_pad", x, 1);
        b.max_pool("pool1", x, 3, 2, Padding::Valid)
    };
    let stages: [(u32, [u32; 3], usize, u32); 4] = [
        (2, [64, 64, 256], 3, 1),
        (3, [128, 128, 512], 4, 2),
        (4, [256, 256, 1024], 6, 2),
        (5, [512, 512, 2048], 3, 2),
    ];
    let mut x = x;
    for (stage, filters, blocks, stride) in stages {
        let mark = b.mark();
        for block in 0..blocks {
            let letter = (b'a' + block as u8) as char;
            b.prefix = format!("res{stage}{letter}_");
            let block_mark = b.mark();
            x = if block == 0 {
                resnet_conv_block(&mut b, x, 3, filters, stride)
            } else {
                resnet_identity_block(&mut b, x, 3, filters)
            };
            b.group_since(&format!("res{stage}{letter}"), block_mark);
        }
        // The stage holds its blocks.
        b.group_since(&format!("res{stage}"), mark);
    }
    b.prefix.clear();
    let x = if course {
        let x = b.avg_pool("avg_pool", x, 2, 2, Padding::Valid);
        b.layer("flatten", LayerKind::Flatten, &[x])
    } else {
        b.layer("avg_pool", LayerKind::GlobalAvgPool, &[x])
    };
    classifier_head(&mut b, x, classes);
    finish(g)
}

pub fn googlenet() -> Graph {
    let mut g = Graph::new("googlenet");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 224, 224, 3);
    let x = b.conv("conv1_7x7_s2", x, 64, 7, 2, Padding::symmetric(3));
    let x = b.relu("conv1_relu", x);
    let x = b.max_pool_ceil("pool1_3x3_s2", x, 3, 2);
    let x = b.conv("conv2_3x3_reduce", x, 64, 1, 1, Padding::Valid);
    let x = b.relu("conv2_reduce_relu", x);
    let x = b.conv("conv2_3x3", x, 192, 3, 1, Padding::symmetric(1));
    let x = b.relu("conv2_relu", x);
    let mut x = b.max_pool_ceil("pool2_3x3_s2", x, 3, 2);
    let f = |f1, f3_reduce, f3, f5_reduce, f5, pool_proj| InceptionFilters {
        f1,
        f3_reduce,
        f3,
        f5_reduce,
        f5,
        pool_proj,
    };
    let modules = [
        ("3a", f(64, 96, 128, 16, 32, 32)),
        ("3b", f(128, 128, 192, 32, 96, 64)),
        ("pool3", f(0, 0, 0, 0, 0, 0)),
        ("4a", f(192, 96, 208, 16, 48, 64)),
        ("4b", f(160, 112, 224, 24, 64, 64)),
        ("4c", f(128, 128, 256, 24, 64, 64)),
        ("4d", f(112, 144, 288, 32, 64, 64)),
        ("4e", f(256, 160, 320, 32, 128, 128)),
        ("pool4", f(0, 0, 0, 0, 0, 0)),
        ("5a", f(256, 160, 320, 32, 128, 128)),
        ("5b", f(384, 192, 384, 48, 128, 128)),
    ];
    for (name, filters) in modules {
        if name.starts_with("pool") {
            b.prefix.clear();
            x = b.max_pool_ceil(&format!("{name}_3x3_s2"), x, 3, 2);
        } else {
            b.prefix = format!("inception_{name}_");
            let mark = b.mark();
            x = inception_bottleneck(&mut b, x, filters);
            b.group_since(&format!("inception_{name}"), mark);
        }
    }
    b.prefix.clear();
    let x = b.avg_pool("pool5_7x7_s1", x, 7, 1, Padding::Valid);
    let x = b.layer("flatten", LayerKind::Flatten, &[x]);
    let x = b.layer("pool5_dropout", LayerKind::Dropout { rate: 0.4 }, &[x]);
    classifier_head(&mut b, x, 1000);
    finish(g)
}

pub fn happy_model() -> Graph {
    let mut g = Graph::new("happy-model");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 64, 64, 3);
    let x = b.zero_pad("zero_pad", x, 3);
    let x = b.conv_bn_relu("conv0", x, 32, 7, 1, Padding::Valid);
    let x = b.max_pool("max_pool", x, 2, 2, Padding::Valid);
    let x = b.layer("flatten", LayerKind::Flatten, &[x]);
    let x = b.dense("fc", x, 1);
    b.layer("sigmoid", LayerKind::Sigmoid, &[x]);
    finish(g)
}

pub fn inception_5x5_naive() -> Graph {
    let mut g = Graph::new("inception-naive");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 28, 28, 192);
    let x = b.conv("conv5x5", x, 32, 5, 1, Padding::Same);
    b.relu("relu", x);
    finish(g)
}

pub fn inception_5x5_bottleneck() -> Graph {
    let mut g = Graph::new("inception-bottleneck");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 28, 28, 192);
    let x = b.conv("bottleneck1x1", x, 16, 1, 1, Padding::Same);
    let x = b.relu("bottleneck_relu", x);
    let x = b.conv("conv5x5", x, 32, 5, 1, Padding::Same);
    b.relu("relu", x);
    finish(g)
}

pub fn inception_module_naive() -> Graph {
    let mut g = Graph::new("inception-module-naive");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 28, 28, 192);
    let mark = b.mark();
    inception_naive(&mut b, x, 64, 128, 32);
    b.group_since("inception", mark);
    finish(g)
}

pub fn inception_module_bottleneck() -> Graph {
    let mut g = Graph::new("inception-module-bottleneck");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 28, 28, 192);
    let mark = b.mark();
    inception_bottleneck(
        &mut b,
        x,
        InceptionFilters {
            f1: 64,
            f3_reduce: 96,
            f3: 128,
            f5_reduce: 16,
            f5: 32,
            pool_proj: 32,
        },
    );
    b.group_since("inception_3a", mark);
    finish(g)
}

pub fn vgg_block() -> Graph {
    let mut g = Graph::new("vgg-block");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 224, 224, 3);
    b.prefix = "block1_".into();
    let mark = b.mark();
    vgg_stage(&mut b, x, 64, 2);
    b.group_since("block1", mark);
    finish(g)
}

pub fn resnet_identity_block_preset() -> Graph {
    let mut g = Graph::new("resnet-identity-block");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 56, 56, 256);
    b.prefix = "res2b_".into();
    let mark = b.mark();
    resnet_identity_block(&mut b, x, 3, [64, 64, 256]);
    b.group_since("res2b", mark);
    finish(g)
}

pub fn resnet_conv_block_preset() -> Graph {
    let mut g = Graph::new("resnet-conv-block");
    let mut b = Builder::new(&mut g);
    let x = b.input("input", 56, 56, 256);
    b.prefix = "res3a_".into();
    let mark = b.mark();
    resnet_conv_block(&mut b, x, 3, [128, 128, 512], 2);
    b.group_since("res3a", mark);
    finish(g)
}
