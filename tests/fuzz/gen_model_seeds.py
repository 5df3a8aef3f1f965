#!/usr/bin/env python3
"""Writes seeds of fuzz_model (tests/fuzz/corpus/model/): small TF.js graph models, each
reaching a different part of the importer (src/nn/import_tfjs.c) and of the planner, in the
target's input layout: a 4-byte little-endian length L, L bytes of model.json, then the bytes
of the weight shard. Each seed is well under 4 KB. Not part of the build; regenerate with

    python3 tests/fuzz/gen_model_seeds.py tests/fuzz/corpus/model
"""
import base64
import json
import struct
import sys


def node(name, op, inputs=(), **attr):
    n = {"name": name, "op": op}
    if inputs:
        n["input"] = list(inputs)
    if attr:
        n["attr"] = attr
    return n


def placeholder(name, dims):
    return node(name, "Placeholder",
                shape={"shape": {"dim": [{"size": str(d)} for d in dims]}})


def ints(values):
    return {"list": {"i": [str(v) for v in values]}}


def text(value):
    return {"s": base64.b64encode(value.encode()).decode()}


def flag(value):
    return {"b": value}


def num(value):
    return {"i": str(value)}


def model(nodes, weights):
    """weights: (name, shape, dtype, values) in shard order."""
    manifest, shard = [], b""
    for name, shape, dtype, values in weights:
        manifest.append({"name": name, "shape": shape, "dtype": dtype})
        shard += struct.pack("<%d%s" % (len(values), "f" if dtype == "float32" else "i"),
                             *values)
    doc = {"format": "graph-model", "modelTopology": {"node": nodes},
           "weightsManifest": [{"paths": ["a.bin"], "weights": manifest}]}
    j = json.dumps(doc, separators=(",", ":")).encode()
    return struct.pack("<I", len(j)) + j + shard


def ramp(n, scale=0.1):
    return [((i * 7) % 11 - 5) * scale for i in range(n)]


SEEDS = {
    # Depthwise convolution after an explicit Pad, Relu6, average pooling, a spatial mean.
    "dwconv-pad-avgpool": model(
        [placeholder("x", [-1, 6, 6, 2]), node("pads", "Const"), node("w", "Const"),
         node("axes", "Const"),
         node("p", "Pad", ["x", "pads"]),
         node("d", "DepthwiseConv2dNative", ["p", "w"], padding=text("VALID"),
              strides=ints([1, 1, 1, 1]), dilations=ints([1, 1, 1, 1])),
         node("r", "Relu6", ["d"]),
         node("a", "AvgPool", ["r"], ksize=ints([1, 2, 2, 1]), strides=ints([1, 2, 2, 1]),
              padding=text("SAME")),
         node("m", "Mean", ["a", "axes"], keep_dims=flag(False))],
        [("pads", [4, 2], "int32", [0, 0, 1, 1, 1, 1, 0, 0]),
         ("w", [3, 3, 2, 1], "float32", ramp(18)),
         ("axes", [2], "int32", [1, 2])]),
    # A dense head: MatMul (transposed weights), BiasAdd, Sigmoid, Tanh, Softmax.
    "matmul-softmax": model(
        [placeholder("x", [-1, 4]), node("w", "Const"), node("b", "Const"),
         node("m", "MatMul", ["x", "w"], transpose_b=flag(True)),
         node("y", "BiasAdd", ["m", "b"]),
         node("s", "Sigmoid", ["y"]), node("t", "Tanh", ["s"]), node("o", "Softmax", ["t"])],
        [("w", [3, 4], "float32", ramp(12)), ("b", [3], "float32", [0.1, -0.2, 0.3])]),
    # Shape plumbing: ConcatV2, StridedSlice with masks, ExpandDims, Squeeze, Reshape.
    "concat-slice-reshape": model(
        [placeholder("x", [-1, 4, 4, 2]), node("axis", "Const"), node("begin", "Const"),
         node("end", "Const"), node("stride", "Const"), node("dim", "Const"),
         node("shape", "Const"),
         node("c", "ConcatV2", ["x", "x", "axis"], N=num(2)),
         node("s", "StridedSlice", ["c", "begin", "end", "stride"], begin_mask=num(9),
              end_mask=num(9), shrink_axis_mask=num(0)),
         node("e", "ExpandDims", ["s", "dim"]),
         node("q", "Squeeze", ["e"], squeeze_dims=ints([4])),
         node("r", "Reshape", ["q", "shape"])],
        [("axis", [], "int32", [3]), ("begin", [4], "int32", [0, 1, 0, 1]),
         ("end", [4], "int32", [0, 3, 4, 3]), ("stride", [4], "int32", [1, 1, 2, 1]),
         ("dim", [], "int32", [-1]), ("shape", [2], "int32", [-1, 16])]),
    # Upsampling: DepthToSpace, ResizeBilinear (half-pixel centres), Max over channels.
    "depthtospace-resize": model(
        [placeholder("x", [-1, 2, 2, 4]), node("size", "Const"), node("axes", "Const"),
         node("d", "DepthToSpace", ["x"], block_size=num(2), data_format=text("NHWC")),
         node("r", "ResizeBilinear", ["d", "size"], align_corners=flag(False),
              half_pixel_centers=flag(True)),
         node("m", "Max", ["r", "axes"], keep_dims=flag(True))],
        [("size", [2], "int32", [8, 6]), ("axes", [1], "int32", [-1])]),
    # Elementwise: Prelu, Sub, Mul, SquaredDifference, Maximum, Minimum, RealDiv and the
    # unary ops, with broadcasting constants.
    "elementwise": model(
        [placeholder("x", [-1, 3, 3, 2]), node("alpha", "Const"), node("c", "Const"),
         node("p", "Prelu", ["x", "alpha"]), node("s", "Sub", ["p", "c"]),
         node("m", "Mul", ["s", "c"]), node("q", "SquaredDifference", ["m", "x"]),
         node("a", "Abs", ["q"]), node("k", "AddV2", ["a", "c"]), node("r", "Rsqrt", ["k"]),
         node("mx", "Maximum", ["r", "x"]), node("mn", "Minimum", ["mx", "c"]),
         node("dv", "RealDiv", ["mn", "k"]), node("e", "Elu", ["dv"]),
         node("l", "LeakyRelu", ["e"], alpha={"f": 0.1}), node("n", "Neg", ["l"]),
         node("sq", "Square", ["n"]), node("sr", "Sqrt", ["sq"]), node("ex", "Exp", ["sr"]),
         node("lg", "Log", ["ex"])],
        [("alpha", [2], "float32", [0.25, 0.5]), ("c", [1, 1, 1, 2], "float32", [1.5, 2.0])]),
    # A fused convolution with explicit padding, stride 2, dilation, PReLU, then PadV2 and
    # the Sum and Min reductions.
    "fused-conv-explicit": model(
        [placeholder("x", [-1, 7, 7, 3]), node("w", "Const"), node("b", "Const"),
         node("alpha", "Const"), node("pads", "Const"), node("v", "Const"),
         node("axes", "Const"),
         node("y", "_FusedConv2D", ["x", "w", "b", "alpha"], padding=text("EXPLICIT"),
              explicit_paddings=ints([0, 0, 1, 2, 2, 1, 0, 0]), strides=ints([1, 2, 2, 1]),
              dilations=ints([1, 1, 1, 1]),
              fused_ops={"list": {"s": [text("BiasAdd")["s"], text("Prelu")["s"]]}},
              num_args=num(2)),
         node("p", "PadV2", ["y", "pads", "v"]),
         node("s", "Sum", ["p", "axes"], keep_dims=flag(True)),
         node("m", "Min", ["s", "axes"], keep_dims=flag(False))],
        [("w", [3, 3, 3, 2], "float32", ramp(54, 0.05)), ("b", [2], "float32", [0.1, -0.1]),
         ("alpha", [2], "float32", [0.2, 0.3]),
         ("pads", [4, 2], "int32", [0, 0, 1, 0, 0, 1, 0, 0]), ("v", [], "float32", [-1.0]),
         ("axes", [2], "int32", [1, 2])]),
    # A dilated SAME convolution, max pooling, Identity, and a Reshape to a shape that Pack
    # builds from two integer constants.
    "conv-dilated-shape": model(
        [placeholder("x", [-1, 8, 8, 1]), node("w", "Const"), node("neg", "Const"),
         node("four", "Const"),
         node("c", "Conv2D", ["x", "w"], padding=text("SAME"), strides=ints([1, 1, 1, 1]),
              dilations=ints([1, 2, 2, 1]), data_format=text("NHWC")),
         node("mp", "MaxPool", ["c"], ksize=ints([1, 3, 3, 1]), strides=ints([1, 2, 2, 1]),
              padding=text("VALID")),
         node("i", "Identity", ["mp"]),
         node("pk", "Pack", ["neg", "four"], N=num(2), axis=num(0)),
         node("r", "Reshape", ["i", "pk"])],
        [("w", [3, 3, 1, 4], "float32", ramp(36)), ("neg", [], "int32", [-1]),
         ("four", [], "int32", [36])]),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/model"
    for name, data in SEEDS.items():
        assert len(data) < 4096, name
        with open("%s/%s" % (out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
