"""Writes the weightless ONNX graphs of all-MiniLM-L6-v2 that ruflo.memory.onnx_encoder runs, at
development time: `python -m ruflo.memory.minilm_graph` (needs onnx, from the `dev` extra, and the
weights package for their shapes). Depends on ruflo.memory.onnx_encoder and, lazily, onnx.

The graphs are committed under ruflo/memory/graphs/ so that the run-time install needs
onnxruntime alone; tests/memory checks they are byte for byte what this module builds now.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

from ruflo.memory.onnx_encoder import GRAPHS, graph_path, session_weights
from ruflo.memory.semantic import MiniLMEncoder, map_safetensors

OPSET = 17
"""LayerNormalization's opset."""
IR_VERSION = 8
"""Pinned, so a newer onnx package cannot make a model an older onnxruntime refuses."""
SUPPLIED = "supplied-by-the-session"
"""Where each weight's data is said to be: the session is handed the arrays themselves."""


def bert_graph(weights: Mapping[str, Any], *, layers: int, heads: int, epsilon: float,
               int8: bool = False) -> bytes:
    """The encoder after the embedding lookup, as a serialized ONNX model that declares
    `weights` (session_weights' arrays: only their names, types and shapes are read) as
    external initializers, holding none of their data.

    Inputs: `embeddings` (batch, tokens, width) float32, `mask` (batch, tokens) int32 with 1 for
    real tokens. Output: `vectors` (batch, width), the mean of the real tokens' last hidden
    states, L2-normalised. Each layer is Attention (query, key and value in one product, padding
    masked), then the output projection added to its input and normalised, then the GELU
    feed-forward added and normalised: what MiniLMEncoder._layer computes, out of ONNX
    Runtime's fused CPU kernels (Attention, SkipLayerNormalization, BiasGelu).

    With `int8`, the four products of each layer use weights rounded to 8 bits per output
    column (QAttention and DynamicQuantizeMatMul, which quantise their input per call).
    QAttention takes each row's real length, not the mask: rows are padded at the end.
    """
    onnx: Any = importlib.import_module("onnx")
    np: Any = importlib.import_module("numpy")
    helper, TensorProto = onnx.helper, onnx.TensorProto
    nodes: list[Any] = []
    constants: list[Any] = []

    def node(op: str, inputs: list[str], output: str, *, contrib: bool = False,
             **attributes: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output,
                                      domain="com.microsoft" if contrib else "", **attributes))
        return output

    def weight(name: str) -> str:
        array = weights[name]
        tensor = TensorProto()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value=SUPPLIED)
        constants.append(tensor)
        return name

    def constant(name: str, array: Any) -> str:
        constants.append(onnx.numpy_helper.from_array(array, name))
        return name

    def dense(x: str, prefix: str) -> str:
        name = f"{prefix}.weight"
        if int8:
            return node("DynamicQuantizeMatMul",
                        [x, weight(f"{name}.int8"), weight(f"{name}.scale")],
                        f"{prefix}.out", contrib=True)
        # x @ W.T with W as stored ([out, in]): no transposed copy to make.
        return node("FusedMatMul", [x, weight(name)], f"{prefix}.out", contrib=True, transB=1)

    def skip_norm(x: str, skip: str, bias: str, prefix: str) -> str:
        # LayerNorm(x + bias + skip) in one kernel.
        return node("SkipLayerNormalization",
                    [x, skip, weight(f"{prefix}.weight"), weight(f"{prefix}.bias"),
                     weight(bias)], f"{prefix}.out", contrib=True, epsilon=epsilon)

    hidden = node("LayerNormalization",
                  ["embeddings", weight("embeddings.LayerNorm.weight"),
                   weight("embeddings.LayerNorm.bias")],
                  "embeddings.LayerNorm.out", axis=-1, epsilon=epsilon)
    if int8:
        lengths = node("ReduceSum", ["mask", constant("length_axis", np.array([1], np.int64))],
                       "mask.lengths", keepdims=0)
    for layer in range(layers):
        p = f"encoder.layer.{layer}"
        qkv_bias = weight(f"{p}.attention.qkv.bias")
        if int8:
            quantized = [f"{p}.attention.in.{part}" for part in ("int8", "scale", "zero")]
            nodes.append(helper.make_node("DynamicQuantizeLinear", [hidden], quantized,
                                          name=quantized[0]))
            qkv = weight(f"{p}.attention.qkv.weight.int8")
            qkv_scale = weight(f"{p}.attention.qkv.weight.scale")
            context = node("QAttention", [quantized[0], qkv, qkv_bias, quantized[1], qkv_scale,
                                          lengths, quantized[2]],
                           f"{p}.attention.out", contrib=True, num_heads=heads)
        else:
            qkv = weight(f"{p}.attention.qkv.weight")
            context = node("Attention", [hidden, qkv, qkv_bias, "mask"], f"{p}.attention.out",
                           contrib=True, num_heads=heads)
        attended = skip_norm(dense(context, f"{p}.attention.output.dense"), hidden,
                             f"{p}.attention.output.dense.bias", f"{p}.attention.output.LayerNorm")
        inner = node("BiasGelu", [dense(attended, f"{p}.intermediate.dense"),
                                  weight(f"{p}.intermediate.dense.bias")],
                     f"{p}.intermediate.gelu", contrib=True)
        hidden = skip_norm(dense(inner, f"{p}.output.dense"), attended, f"{p}.output.dense.bias",
                           f"{p}.output.LayerNorm")

    real = node("Unsqueeze", [node("Cast", ["mask"], "mask.float", to=TensorProto.FLOAT),
                              constant("last_axis", np.array([-1], dtype=np.int64))], "mask.3d")
    tokens_axis = constant("tokens_axis", np.array([1], dtype=np.int64))
    summed = node("ReduceSum", [node("Mul", [hidden, real], "masked"), tokens_axis], "summed",
                  keepdims=0)
    count = node("Max", [node("ReduceSum", [real, tokens_axis], "count", keepdims=0),
                         constant("min_count", np.array(1e-9, dtype=np.float32))], "count.clipped")
    pooled = node("Div", [summed, count], "pooled")
    norm = node("Max", [node("ReduceL2", [pooled], "norm", axes=[-1], keepdims=1),
                        constant("min_norm", np.array(1e-12, dtype=np.float32))], "norm.clipped")
    node("Div", [pooled, norm], "vectors")

    unused = sorted(set(weights) - {tensor.name for tensor in constants})
    if unused:
        raise ValueError(f"session_weights makes weights the graph never names: {unused[:3]}")
    width = weights["embeddings.LayerNorm.weight"].shape[0]
    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT,
                                       ["batch", "tokens", width]),
         helper.make_tensor_value_info("mask", TensorProto.INT32, ["batch", "tokens"])],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", width])],
        constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = IR_VERSION
    serialized: bytes = model.SerializeToString()
    return serialized


def build_graphs() -> dict[bool, bytes]:
    """Each committed graph as this module builds it now, by `int8`, from the installed
    weights' shapes."""
    encoder = MiniLMEncoder()
    np = encoder.np
    built = {}
    for int8 in GRAPHS:
        weights = session_weights(np, map_safetensors(np, encoder.weights_path),
                                  layers=encoder.layers, int8=int8)
        built[int8] = bert_graph(weights, layers=encoder.layers, heads=encoder.heads,
                                 epsilon=encoder.epsilon, int8=int8)
    return built


def main() -> int:
    for int8, model in build_graphs().items():
        path = graph_path(int8)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model)
        print(f"wrote {path} ({len(model):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
