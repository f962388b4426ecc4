"""`stylecam export STYLE OUT.onnx`: a style as a standalone ONNX model, and the ONNX bytes the engine's
OpenVINO backend is built from (one conversion path for both, so what runs here is what gets exported).

The model takes and returns RGB 0..255 float32 NCHW (1x3xHxW); height and width are dynamic but must be
multiples of the net's size multiple (stored in the metadata; pad, e.g. by reflection, and crop back).
Output is not clamped: clamp to 0..255 before converting to 8 bits.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn as nn

from .errors import StylecamError

OPSET = 17  # opset 17 keeps InstanceNormalization/Resize that OpenCV's dnn, onnxruntime and OpenVINO all read
INPUT, OUTPUT = "input", "output"
IO_NOTE = ("RGB 0..255 float32 NCHW in and out; height and width dynamic, multiples of the size_multiple "
           "metadata entry; clamp the output to 0..255")


def onnx_bytes(model: nn.Module, metadata: Optional[Dict[str, str]] = None) -> bytes:
    """An fp32 net -> ONNX model bytes with dynamic height/width (``metadata`` as ``metadata_props``).

    The TorchScript-based exporter (``dynamo=False``): it took 2-3 s a net here against 9-14 s for
    ``openvino.convert_model`` on the torch module, and its graph loads in OpenCV's dnn (tests/test_export.py).
    """
    import onnx  # the exporter needs it too; a clear ImportError beats its own message

    model = model.eval()
    side = 16 * getattr(model, "size_multiple", 4)
    example = torch.rand(1, 3, side, side, device=next(model.parameters()).device) * 255
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the tests check the result instead
        torch.onnx.export(model, (example,), buf, opset_version=OPSET, dynamo=False, do_constant_folding=True,
                          input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {2: "height", 3: "width"}, OUTPUT: {2: "height", 3: "width"}})
    if not metadata:
        return buf.getvalue()
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    return proto.SerializeToString()


def depth_first_shuffles(data: bytes) -> bytes:
    """The same net with every pixel shuffle as a depth-first (DCR) DepthToSpace, its conv's outputs reordered.

    torch exports ``pixel_shuffle`` as column-row-depth (CRD): in OpenVINO's channels-last layout each output
    pixel then gathers its channels with a stride, while DCR copies contiguous runs (the engine measured a few
    per cent faster per frame, identical output in fp32). Only shuffles fed by a Conv with constant weights
    that nothing else reads are rewritten; the file ``stylecam export`` writes keeps torch's order."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(data)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    readers: Dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type != "DepthToSpace" or attrs["mode"].s != b"CRD":
            continue
        conv = producer.get(node.input[0])
        if conv is None or conv.op_type != "Conv" or readers[node.input[0]] != 1 or len(conv.input) < 3 \
                or not all(name in inits for name in conv.input[1:3]):
            continue
        b2 = attrs["blocksize"].i ** 2
        for name in conv.input[1:3]:
            t = numpy_helper.to_array(inits[name])
            c = t.shape[0] // b2  # CRD reads channel c * b2 + k, DCR reads k * c_out + c
            order = np.arange(c * b2).reshape(c, b2).T.ravel()
            inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(t[order]), name))
        attrs["mode"].s = b"DCR"
    return proto.SerializeToString()


def style_metadata(model: nn.Module, info) -> Dict[str, str]:
    """What a consumer of the file needs to use it correctly and to credit the painting."""
    return {"stylecam.style": info.name, "stylecam.display_name": info.display_name or info.name,
            "stylecam.painting": info.credit_line(), "stylecam.credit": json.dumps(info.credit or {}),
            "stylecam.arch": getattr(model, "arch_name", info.arch),
            "stylecam.size_multiple": str(getattr(model, "size_multiple", 4)),
            "stylecam.io": IO_NOTE}


def export(style, out) -> Path:
    """Writes ``style`` as ONNX to ``out`` atomically (``atomic.save_file``: a temporary beside it, renamed)."""
    from . import weights as weights_io
    from .atomic import check_writable, save_file

    out = Path(out)
    if out.is_dir():
        raise StylecamError(f"{out} is a folder; give a file name such as {out / 'style.onnx'}")
    check_writable(out.absolute().parent)  # before the conversion's seconds are spent
    model, info = weights_io.load(style)
    data = onnx_bytes(model.float().cpu(), style_metadata(model, info))
    save_file(lambda tmp: Path(tmp).write_bytes(data), out)
    return out


def register(sub) -> None:
    what = "write a style as an ONNX model (for onnxruntime, OpenVINO, OpenCV dnn)"
    p = sub.add_parser("export", help=what, description=f"{what[0].upper()}{what[1:]}: {IO_NOTE}.")
    p.add_argument("style", metavar="STYLE", help="a name from `stylecam styles`, or a weights file")
    p.add_argument("output", metavar="OUT.onnx", help="the ONNX file to write")
    p.set_defaults(func=run)


def run(args) -> int:
    out = export(args.style, args.output)
    print(f"wrote {out} ({IO_NOTE})")
    return 0
