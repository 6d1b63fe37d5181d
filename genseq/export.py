"""ONNX export of a language model's decoding step, for running it where there is no PyTorch (a phone keyboard).

    ids (B,) int64, h (L, B, H) [, c (L, B, H)]  ->  logits (B, V), next_h (L, B, H) [, next_c (L, B, H)]

The graph computes what the engine's FusedStep (genseq.model) computes, in the
same order: embedding lookup, per layer one product of [x; h] with [W_ih | W_hh]
and the gate arithmetic, the optional projection, the output layer. The batch
is dynamic; c is there for an LSTM only. An export directory holds model.onnx,
the checkpoint's tokenizer.model and config.json (the model config, the state's
names and shapes, the special ids), and is written as a whole or not at all.

The graph is written node by node with onnx.helper rather than traced by
torch.onnx.export: the step is twenty operators, and writing them keeps the
tensor names the runner reads, stores a tied embedding and output layer once
(both exporters store it twice: 44 MB instead of 34 MB for the default model),
and takes milliseconds, where the dynamo exporter takes about 10 s and writes
an external data file, and the TorchScript one is deprecated. int8 is
onnxruntime's dynamic quantization of every MatMul and Gather weight.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import TOKENIZER_FILE, write_directory
from .errors import ConfigError, GenseqError
from .model import LanguageModel
from .tokenizer import Tokenizer

FORMAT = "genseq-onnx"
FORMAT_VERSION = 1
MODEL_FILE, CONFIG_FILE = "model.onnx", "config.json"
PRECISIONS = ("fp32", "int8")
OPSET = 17  # what ONNX Runtime has run since 1.14, mobile builds included
INSTALL_HINT = "pip install 'genseq[onnx]' (or: pip install onnx onnxruntime)"


def require(module: str):
    """Import an optional dependency of the export, or say in one sentence what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GenseqError(f"ONNX export needs the {module} package, which is not installed: {INSTALL_HINT}") from None


# ---- the graph ------------------------------------------------------------------------------
class GraphBuilder:
    """Nodes and weights of one ONNX graph. A node's output is named by its operator and a counter unless it is
    one of the graph's outputs, which are named by the caller."""

    def __init__(self):
        self.onnx = require("onnx")
        self.nodes, self.initializers, self.count = [], [], 0

    def weight(self, name: str, tensor: torch.Tensor | np.ndarray) -> str:
        """Store tensor (as float32 when it is a torch tensor) under name; returns name."""
        array = tensor.detach().cpu().float().numpy() if isinstance(tensor, torch.Tensor) else tensor
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None, **attributes):
        """One node; returns its output's name, or the list of its output names when outputs > 1."""
        self.count += 1
        names = [name] if name else [f"{op_type.lower()}_{self.count}_{i}" for i in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names, **attributes))
        return names if outputs > 1 else names[0]

    def linear(self, x: str, weight: str, bias: str, name: str | None = None) -> str:
        """x (B, in) @ weight (in, out) + bias: MatMul and Add, the pair dynamic quantization turns into int8."""
        return self.op("Add", self.op("MatMul", x, weight), bias, name=name)

    def sigmoid(self, x: str) -> str:
        return self.op("Sigmoid", x)

    def tanh(self, x: str) -> str:
        return self.op("Tanh", x)


def language_model_graph(model: LanguageModel):
    """The decoding step of model as an onnx.ModelProto (see the module docstring for its inputs and outputs)."""
    onnx = require("onnx")
    config, g = model.config, GraphBuilder()
    lstm = config.cell == "lstm"
    x = embedding_lookup(g, model)
    new_h, new_c = [], []
    for layer in range(config.num_layers):
        h = g.op("Gather", "h", g.weight(f"layer{layer}.index", np.array(layer, dtype=np.int64)), axis=0)  # (B, H)
        if lstm:
            c = g.op("Gather", "c", f"layer{layer}.index", axis=0)
            x, c = lstm_cell(g, model, layer, x, h, c)
            new_c.append(c)
        elif config.cell == "gru":
            x = gru_cell(g, model, layer, x, h)
        else:
            x = g.tanh(g.linear(g.op("Concat", x, h, axis=1), *fused_weights(g, model, layer)))
        new_h.append(x)
    if model.projection is not None:
        x = g.linear(x, g.weight("projection.weight", model.projection.weight.t()),
                     g.weight("projection.bias", model.projection.bias))  # (B, P)
    g.linear(x, output_weight(g, model), g.weight("output.bias", model.output.bias), name="logits")  # (B, V)
    stack(g, new_h, "next_h")
    if lstm:
        stack(g, new_c, "next_c")
    return onnx.helper.make_model(
        onnx.helper.make_graph(g.nodes, "genseq_step", *graph_signature(onnx, config), g.initializers),
        opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="genseq", producer_version=__version__,
    )


def embedding_lookup(g: GraphBuilder, model: LanguageModel) -> str:
    """The rows of ids in the embedding, (B, E). A tied embedding is stored once, as the output layer's
    (E, V) matrix: the lookup takes its columns and transposes them."""
    if model.config.tie_weights:
        return g.op("Transpose", g.op("Gather", output_weight(g, model), "ids", axis=1), perm=[1, 0])
    return g.op("Gather", g.weight("embedding.weight", model.embedding.weight), "ids", axis=0)


def output_weight(g: GraphBuilder, model: LanguageModel) -> str:
    """The output layer's weight as (in, V), added to the graph on first use."""
    if not any(tensor.name == "output.weight" for tensor in g.initializers):
        g.weight("output.weight", model.output.weight.t())
    return "output.weight"


def fused_weights(g: GraphBuilder, model: LanguageModel, layer: int) -> tuple[str, str]:
    """[W_ih | W_hh]^T (E or H + H, gates * H) and b_ih + b_hh of one layer, as FusedStep packs them."""
    core = model.core
    weight = torch.cat([getattr(core, f"weight_ih_l{layer}"), getattr(core, f"weight_hh_l{layer}")], 1).t()
    bias = getattr(core, f"bias_ih_l{layer}") + getattr(core, f"bias_hh_l{layer}")
    return g.weight(f"layer{layer}.weight", weight), g.weight(f"layer{layer}.bias", bias)


def lstm_cell(g: GraphBuilder, model: LanguageModel, layer: int, x: str, h: str, c: str) -> tuple[str, str]:
    gates = g.linear(g.op("Concat", x, h, axis=1), *fused_weights(g, model, layer))  # (B, 4H), order i, f, g, o
    i, f, candidate, o = g.op("Split", gates, axis=1, outputs=4)
    c = g.op("Add", g.op("Mul", g.sigmoid(f), c), g.op("Mul", g.sigmoid(i), g.tanh(candidate)))
    return g.op("Mul", g.sigmoid(o), g.tanh(c)), c


def gru_cell(g: GraphBuilder, model: LanguageModel, layer: int, x: str, h: str) -> str:
    core = model.core
    gi = g.linear(x, g.weight(f"layer{layer}.weight_ih", getattr(core, f"weight_ih_l{layer}").t()),
                  g.weight(f"layer{layer}.bias_ih", getattr(core, f"bias_ih_l{layer}")))  # (B, 3H), order r, z, n
    gh = g.linear(h, g.weight(f"layer{layer}.weight_hh", getattr(core, f"weight_hh_l{layer}").t()),
                  g.weight(f"layer{layer}.bias_hh", getattr(core, f"bias_hh_l{layer}")))
    i_r, i_z, i_n = g.op("Split", gi, axis=1, outputs=3)
    h_r, h_z, h_n = g.op("Split", gh, axis=1, outputs=3)
    r, z = g.sigmoid(g.op("Add", i_r, h_r)), g.sigmoid(g.op("Add", i_z, h_z))
    n = g.tanh(g.op("Add", i_n, g.op("Mul", r, h_n)))
    one = g.weight(f"layer{layer}.one", np.array(1.0, dtype=np.float32))
    return g.op("Add", g.op("Mul", g.op("Sub", one, z), n), g.op("Mul", z, h))


def stack(g: GraphBuilder, rows: list[str], name: str) -> None:
    """(B, H) per layer -> name (L, B, H)."""
    axis = g.weight(f"{name}.axis", np.array([0], dtype=np.int64))
    g.op("Concat", *[g.op("Unsqueeze", row, axis) for row in rows], axis=0, name=name)


def state_names(config) -> list[tuple[str, str]]:
    """(input, output) names of the state's tensors, each (L, B, H)."""
    return [("h", "next_h"), ("c", "next_c")] if config.cell == "lstm" else [("h", "next_h")]


def graph_signature(onnx, config) -> tuple[list, list]:
    """(inputs, outputs): ids (B,) and the state in, logits (B, V) and the next state out; B is free."""
    def tensor(name, element_type, shape):
        return onnx.helper.make_tensor_value_info(name, element_type, shape)

    float32, states = onnx.TensorProto.FLOAT, state_names(config)
    state_shape = [config.num_layers, "batch", config.hidden_size]
    inputs = [tensor("ids", onnx.TensorProto.INT64, ["batch"]),
              *[tensor(name, float32, state_shape) for name, _ in states]]
    outputs = [tensor("logits", float32, ["batch", config.vocab_size]),
               *[tensor(name, float32, state_shape) for _, name in states]]
    return inputs, outputs


# ---- the export directory -------------------------------------------------------------------
def export_onnx(model: LanguageModel, tokenizer: Tokenizer, out: str | Path, precision: str = "fp32") -> dict:
    """Write model's decoding step, its tokenizer and config.json to the directory out; returns the config written."""
    check_export(out, precision)
    graph = language_model_graph(model)
    require("onnx").checker.check_model(graph)
    graph_bytes = graph.SerializeToString() if precision == "fp32" else quantized(graph)
    config = export_config(model, tokenizer, precision)
    write_directory(out, {MODEL_FILE: graph_bytes, TOKENIZER_FILE: tokenizer.to_bytes(),
                          CONFIG_FILE: json.dumps(config, indent=2).encode()})
    return config


def check_export(out: str | Path, precision: str) -> None:
    """Refuse, before any work, a precision not in PRECISIONS, a missing onnx or onnxruntime, and an out that
    cannot be replaced (see check_export_directory)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    require("onnx")
    if precision == "int8":
        require("onnxruntime")
    check_export_directory(Path(out))


def quantized(graph) -> bytes:
    """The graph with its MatMul and Gather weights in 8 bits (one scale per output column where a weight has one
    user, per tensor for a tied embedding), each product's input quantized as the step runs."""
    quantization = require("onnxruntime.quantization")
    with tempfile.TemporaryDirectory() as scratch, _quiet_root_logger():
        path = Path(scratch) / MODEL_FILE
        quantization.quantize_dynamic(graph, path, weight_type=quantization.QuantType.QInt8, per_channel=True,
                                      op_types_to_quantize=["MatMul", "Gather"])
        return path.read_bytes()


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs advice about image models on the root logger; a command prints one line."""
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(level)


def export_config(model: LanguageModel, tokenizer: Tokenizer, precision: str) -> dict:
    config = model.config
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "lm",
        "precision": precision,
        "files": {"model": MODEL_FILE, "tokenizer": TOKENIZER_FILE},
        "model_config": config.to_dict(),
        "inputs": ["ids", *[name for name, _ in state_names(config)]],
        "outputs": ["logits", *[name for _, name in state_names(config)]],
        # Every state tensor is (num_layers, batch, hidden_size) and starts at zeros.
        "state": [{"input": name, "output": output, "shape": [config.num_layers, config.hidden_size]}
                  for name, output in state_names(config)],
        "special_ids": {"pad": tokenizer.pad_id, "unk": tokenizer.unk_id, "bos": tokenizer.bos_id,
                        "eos": tokenizer.eos_id, "newline": tokenizer.newline_id},
        # genseq feeds this token before every prompt: documents are separated by it in training.
        "start_id": tokenizer.eos_id,
        "opset": OPSET,
        "versions": {"genseq": __version__, "onnx": require("onnx").__version__},
    }


def check_export_directory(out: Path) -> None:
    """Refuse to replace a directory that holds anything but an earlier export's files: the export swaps in
    a whole directory, which would delete the rest (a checkpoint's weights, say)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"the export directory {out} is a file; choose a directory")
    others = sorted(path.name for path in out.iterdir() if path.name not in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE))
    if others:
        raise ConfigError(f"the export directory {out} holds other files ({', '.join(others[:3])}), which the export "
                          "would delete; choose a new or empty directory")
