#!/usr/bin/python3
"""The ONNX Runtime int8 peer's graph: dynamic quantization of an fp32 ONNX export.

    quantize_int8.py IN.onnx OUT.onnx

Rewrites the graph the way onnxruntime.quantization.quantize_dynamic(per_channel=True,
weight_type=QInt8) does for MatMul (written here from its documented output, with Debian's
python3-onnx; onnxruntime's Python package is not in Debian): every MatMul whose second input is
a 2-D float initializer W (K, N) becomes

    x_q, x_scale, x_zp = DynamicQuantizeLinear(x)             # u8, per tensor, at run time
    y_i32 = MatMulInteger(x_q, W_q, x_zp, W_zp)               # W_q int8 (K, N), W_zp zeros (N)
    y = Cast(y_i32, float) * (x_scale * W_scale)              # W_scale (N): per output channel

with W_scale[n] = max_k |W[k][n]| / 127 and W_q = round(W / W_scale) (symmetric, per channel).
ONNX Runtime's graph optimizer fuses this into its MatMulIntegerToFloat / DynamicQuantizeMatMul
kernels as it does for quantize_dynamic's output. Everything else (attention's activation
products, LayerNorm, GELU, softmax) stays fp32, as in ORT's own dynamic quantization.
Prints how many MatMuls were quantized and the weight bytes before and after."""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    model = onnx.load(sys.argv[1])
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes, new_inits, drop = [], [], set()
    n_q = fp32_bytes = int8_bytes = 0
    for node in g.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if w is None or len(w.dims) != 2 or w.data_type != TensorProto.FLOAT:
            nodes.append(node)
            continue
        W = numpy_helper.to_array(w).astype(np.float32)
        scale = np.abs(W).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        Wq = np.clip(np.rint(W / scale), -127, 127).astype(np.int8)
        p = node.name or node.output[0]
        names = {k: "%s_%s" % (p, k) for k in ("wq", "wzp", "wscale", "xq", "xscale", "xzp", "i32", "f", "s")}
        new_inits += [numpy_helper.from_array(Wq, names["wq"]),
                      numpy_helper.from_array(np.zeros(W.shape[1], np.int8), names["wzp"]),
                      numpy_helper.from_array(scale.astype(np.float32), names["wscale"])]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [node.input[0]], [names["xq"], names["xscale"], names["xzp"]],
                             name=p + "_quant"),
            helper.make_node("MatMulInteger", [names["xq"], names["wq"], names["xzp"], names["wzp"]], [names["i32"]],
                             name=p + "_matmul_int"),
            helper.make_node("Cast", [names["i32"]], [names["f"]], to=TensorProto.FLOAT, name=p + "_cast"),
            helper.make_node("Mul", [names["xscale"], names["wscale"]], [names["s"]], name=p + "_scale"),
            helper.make_node("Mul", [names["f"], names["s"]], [node.output[0]], name=p + "_dequant"),
        ]
        drop.add(w.name)
        n_q += 1
        fp32_bytes += W.nbytes
        int8_bytes += Wq.nbytes + 4 * W.shape[1]
    used = {i for n in nodes for i in n.input}
    keep = [t for t in g.initializer if t.name not in drop or t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    if not any(o.domain in ("", "ai.onnx") and o.version >= 11 for o in model.opset_import):
        raise SystemExit("quantize_int8: the graph's opset is below 11 (DynamicQuantizeLinear)")
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])
    print("quantized %d MatMuls: weights %.1f MB fp32 -> %.1f MB int8" % (n_q, fp32_bytes / 1e6, int8_bytes / 1e6))
    return 0 if n_q else 1


if __name__ == "__main__":
    sys.exit(main())
