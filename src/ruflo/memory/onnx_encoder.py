"""all-MiniLM-L6-v2 on ONNX Runtime, for long-lived processes (`ruflo mcp`): a new query in ~2 ms
where numpy takes ~8 (two cores). Depends on ruflo.memory.semantic and, lazily, onnx and
onnxruntime (the `embeddings` extra); absent or broken, callers keep the numpy encoder.

The BERT graph is built in memory from the same safetensors weights with onnx.helper, out of
ONNX Runtime's fused CPU kernels (Attention, SkipLayerNormalization, BiasGelu), so nothing is
exported, cached or written. `ruflo mcp` runs it with 8-bit weights (each product's input is
quantised per call by the kernel): ~1.7x quicker than in float, its vectors within 1% of
numpy's (cosine >= 0.99), which moves only near-ties. Tokens and embedding lookup stay in
numpy, shared with MiniLMEncoder: the 47 MB word table then stays memory-mapped instead of
copied into the session.
Setting up costs ~0.2 s of imports, graph and session, more than a one-shot CLI search could
save, so `ruflo memory search` keeps numpy.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Literal

from ruflo.memory.semantic import MiniLMEncoder, map_safetensors

OPSET = 17
"""LayerNormalization's opset."""
IR_VERSION = 8
"""Pinned, so a newer onnx package cannot make a model an older onnxruntime refuses."""
THREADS = min(2, os.cpu_count() or 1)
"""Two at most: a query's products are small, and `ruflo mcp` shares the machine with the
agents calling it."""

Spinning = Literal["within runs", "always", "never"]

log = logging.getLogger(__name__)


def quickest_encoder() -> MiniLMEncoder:
    """ONNX Runtime's encoder, or numpy's when it can't be had: then a warning says why (and
    searches answer alike, only slower)."""
    problem = onnx_runtime_missing()
    if problem is None:
        try:
            return OnnxMiniLMEncoder(int8=True)
        except Exception as error:  # whatever breaks the optional engine, numpy still works
            problem = describe(error)
    log.warning("memory search runs on numpy, ~4x slower per new query: ONNX Runtime can't be "
                "used (%s); pip install 'ruflo[embeddings]' (again, if it is broken) brings it",
                problem)
    return MiniLMEncoder()


def onnx_runtime_problem(*, build: bool = False) -> str | None:
    """Why long-lived processes would search on numpy rather than ONNX Runtime, or None. With
    `build`, the encoder is built and run once (~0.5 s) instead of only its packages found."""
    problem = onnx_runtime_missing()
    if problem is not None or not build:
        return problem
    try:
        OnnxMiniLMEncoder(int8=True).encode(["ruflo doctor"])
    except Exception as error:  # any failure is the answer
        return describe(error)
    return None


def onnx_runtime_missing() -> str | None:
    """Which package the ONNX Runtime encoder lacks (checked without importing), or None."""
    for name in ("onnxruntime", "onnx"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed"
    return None


def describe(error: Exception) -> str:
    """The error in one line, for people (ONNX Runtime's messages run on with internals)."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


class OnnxMiniLMEncoder(MiniLMEncoder):
    """MiniLMEncoder with the forward pass run by ONNX Runtime: the same vectors (to 1e-4), or
    with `int8` weights, vectors within 1% of them, ~1.7x sooner."""

    def __init__(self, model_dir: Path | None = None, *, int8: bool = False) -> None:
        super().__init__(model_dir)
        self.engine = "ONNX Runtime, int8 weights" if int8 else "ONNX Runtime"
        ort: Any = importlib.import_module("onnxruntime")
        # The weights go to ONNX Runtime, which copies them, from a mapping of their own: once
        # it is dropped the pages read while building leave this process's memory. self.weights
        # keeps mapping the embedding tables, of which a search reads a few rows.
        model, weights = bert_graph(self.np, map_safetensors(self.np, self.weights_path),
                                    layers=self.layers, heads=self.heads, epsilon=self.epsilon,
                                    int8=int8)
        self.session: Any = inference_session(ort, model, weights)

    def _forward(self, ids: Any, mask: Any) -> Any:
        (vectors,) = self.session.run(None, {"embeddings": self.embed(ids), "mask": mask})
        return vectors


def inference_session(ort: Any, model: bytes, weights: dict[str, Any], *, threads: int = THREADS,
                      spinning: Spinning = "never") -> Any:
    """An ONNX Runtime session of `model` (from bert_graph) on the CPU, with ORT's own graph
    optimisations. The weights are copied in: the caller may drop them afterwards.

    `spinning`: when idle pool threads spin rather than sleep. Never (ruflo's choice), an idle
    `ruflo mcp` costs no CPU. "always" (ORT's default) answers a query ~2-4 ms sooner but spins
    on for ~50 ms after it, a core's worth of CPU; "within runs" stops at the end of each query,
    which is ~1-2 ms quicker back to back but ~3 ms slower when queries come tens of
    milliseconds or more apart, as an agent's do. bench/embeddings.py measures all three."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's arena would keep, for good, the memory of the largest batch it ever ran (~300 MB
    # after 32 long notes); plain allocations are given back, and queries are no slower.
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning",
                                     "0" if spinning == "never" else "1")
    if spinning == "within runs":
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3  # errors only; they raise anyway
    names = sorted(weights)
    options.add_external_initializers(
        names, [ort.OrtValue.ortvalue_from_numpy(weights[name]) for name in names])
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def bert_graph(np: Any, weights: dict[str, Any], *, layers: int, heads: int,
               epsilon: float, int8: bool = False) -> tuple[bytes, dict[str, Any]]:
    """The encoder after the embedding lookup, as a serialized ONNX model, and the weights it
    names as external initializers (to hand to the session, not copied into the model).

    Inputs: `embeddings` (batch, tokens, width) float32, `mask` (batch, tokens) int32 with 1 for
    real tokens. Output: `vectors` (batch, width), the mean of the real tokens' last hidden
    states, L2-normalised. Each layer is Attention (query, key and value in one product, padding
    masked), then the output projection added to its input and normalised, then the GELU
    feed-forward added and normalised: what MiniLMEncoder._layer computes.

    With `int8`, the four products of each layer use weights rounded to 8 bits per output
    column (QAttention and DynamicQuantizeMatMul, which quantise their input per call).
    QAttention takes each row's real length, not the mask: rows are padded at the end.
    """
    onnx: Any = importlib.import_module("onnx")
    helper, TensorProto = onnx.helper, onnx.TensorProto
    nodes: list[Any] = []
    constants: list[Any] = []
    external: dict[str, Any] = {}

    def node(op: str, inputs: list[str], output: str, *, contrib: bool = False,
             **attributes: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output,
                                      domain="com.microsoft" if contrib else "", **attributes))
        return output

    def weight(name: str, array: Any, dtype: Any = np.float32) -> str:
        # Declared as external data; the session gets the array itself.
        array = np.ascontiguousarray(array, dtype=dtype)
        external[name] = array
        tensor = TensorProto()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value="supplied-by-the-session")
        constants.append(tensor)
        return name

    def constant(name: str, array: Any) -> str:
        constants.append(onnx.numpy_helper.from_array(array, name))
        return name

    def int8_weight(name: str, transposed: Any) -> tuple[str, str]:
        # Symmetric, per output column: W ~ scale * q with q in [-127, 127].
        scale = np.abs(transposed).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        rounded = np.clip(np.rint(transposed / scale), -127, 127)
        return weight(f"{name}.int8", rounded, np.int8), weight(f"{name}.scale", scale)

    def dense(x: str, prefix: str) -> str:
        if int8:
            transposed = np.asarray(weights[f"{prefix}.weight"], dtype=np.float32).T
            return node("DynamicQuantizeMatMul", [x, *int8_weight(f"{prefix}.weight", transposed)],
                        f"{prefix}.out", contrib=True)
        # x @ W.T with W as stored ([out, in]): no transposed copy to make.
        return node("FusedMatMul", [x, weight(f"{prefix}.weight", weights[f"{prefix}.weight"])],
                    f"{prefix}.out", contrib=True, transB=1)

    def skip_norm(x: str, skip: str, bias: str, prefix: str) -> str:
        # LayerNorm(x + bias + skip) in one kernel.
        return node("SkipLayerNormalization",
                    [x, skip, weight(f"{prefix}.weight", weights[f"{prefix}.weight"]),
                     weight(f"{prefix}.bias", weights[f"{prefix}.bias"]),
                     weight(bias, weights[bias])], f"{prefix}.out", contrib=True, epsilon=epsilon)

    hidden = node("LayerNormalization",
                  ["embeddings", weight("embeddings.LayerNorm.weight",
                                        weights["embeddings.LayerNorm.weight"]),
                   weight("embeddings.LayerNorm.bias", weights["embeddings.LayerNorm.bias"])],
                  "embeddings.LayerNorm.out", axis=-1, epsilon=epsilon)
    if int8:
        lengths = node("ReduceSum", ["mask", constant("length_axis", np.array([1], np.int64))],
                       "mask.lengths", keepdims=0)
    for layer in range(layers):
        p = f"encoder.layer.{layer}"
        parts = [f"{p}.attention.self.{part}" for part in ("query", "key", "value")]
        qkv_weight = np.concatenate([weights[f"{part}.weight"] for part in parts]).T
        qkv_bias = weight(f"{p}.attention.qkv.bias",
                          np.concatenate([weights[f"{part}.bias"] for part in parts]))
        if int8:
            quantized = [f"{p}.attention.in.{part}" for part in ("int8", "scale", "zero")]
            nodes.append(helper.make_node("DynamicQuantizeLinear", [hidden], quantized,
                                          name=quantized[0]))
            qkv, qkv_scale = int8_weight(f"{p}.attention.qkv.weight", qkv_weight)
            context = node("QAttention", [quantized[0], qkv, qkv_bias, quantized[1], qkv_scale,
                                          lengths, quantized[2]],
                           f"{p}.attention.out", contrib=True, num_heads=heads)
        else:
            qkv = weight(f"{p}.attention.qkv.weight", qkv_weight)
            context = node("Attention", [hidden, qkv, qkv_bias, "mask"], f"{p}.attention.out",
                           contrib=True, num_heads=heads)
        attended = skip_norm(dense(context, f"{p}.attention.output.dense"), hidden,
                             f"{p}.attention.output.dense.bias", f"{p}.attention.output.LayerNorm")
        inner = node("BiasGelu", [dense(attended, f"{p}.intermediate.dense"),
                                  weight(f"{p}.intermediate.dense.bias",
                                         weights[f"{p}.intermediate.dense.bias"])],
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
    return model.SerializeToString(), external
