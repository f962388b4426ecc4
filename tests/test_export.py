"""`stylecam export STYLE OUT.onnx`: the file loads in onnxruntime, OpenVINO and OpenCV's dnn and computes the
torch net's function at sizes other than the export's, carries its metadata, and is written atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stylecam import cli
from stylecam import weights as weights_io

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def exported(weights_dir, tmp_path_factory):
    """style -> (onnx path, torch net) for a fast and a classic test style."""
    out = {}
    d = tmp_path_factory.mktemp("onnx")
    for style in ("tfast", "tfast2", "tclassic"):
        path = d / f"{style}.onnx"
        assert cli.main(["export", str(weights_dir / f"{style}.safetensors"), str(path)]) == 0
        out[style] = (path, weights_io.load(weights_dir / f"{style}.safetensors")[0].eval())
    return out


def _input(h, w, seed=0):
    return (np.random.default_rng(seed).random((1, 3, h, w)) * 255).astype(np.float32)


def _torch(net, x):
    with torch.inference_mode():
        return net(torch.from_numpy(x)).numpy()


TOL = 0.05  # 0..255 scale: fp32 runtimes differ by summation order only

SIZES = [(64, 96), (104, 56)]  # neither is the export's example size: height and width are dynamic (multiples of 8)


@pytest.mark.parametrize("style", ["tfast", "tfast2", "tclassic"])
def test_onnxruntime_matches_torch(exported, style):
    ort = pytest.importorskip("onnxruntime")
    path, net = exported[style]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"] and sess.get_inputs()[0].shape[2:] == ["height", "width"]
    for h, w in SIZES:
        x = _input(h, w)
        y = sess.run(None, {"input": x})[0]
        assert y.shape == (1, 3, h, w) and np.abs(y - _torch(net, x)).max() <= TOL


@pytest.mark.parametrize("style", ["tfast", "tfast2", "tclassic"])
def test_openvino_matches_torch(exported, style):
    ov = pytest.importorskip("openvino")
    path, net = exported[style]
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for h, w in SIZES:
        x = _input(h, w, seed=1)
        y = compiled(x)[0]
        assert y.shape == (1, 3, h, w) and np.abs(y - _torch(net, x)).max() <= TOL


@pytest.mark.parametrize("style", ["tfast", "tfast2", "tclassic"])
def test_opencv_dnn_matches_torch(exported, style):
    import cv2

    path, net = exported[style]
    dnn = cv2.dnn.readNetFromONNX(str(path))
    for h, w in SIZES:
        x = _input(h, w, seed=2)
        dnn.setInput(x)
        y = dnn.forward()
        assert y.shape == (1, 3, h, w) and np.abs(y - _torch(net, x)).max() <= TOL


@pytest.mark.parametrize("style", ["tfast", "tfast2"])
def test_engine_graph_has_depth_first_shuffles_and_the_same_function(exported, style):
    """The engine's copy of the graph: every pixel shuffle depth-first (DCR), the conv before it reordered, so
    onnxruntime computes what torch does; the exported file keeps torch's column-row-depth order."""
    ort = pytest.importorskip("onnxruntime")
    from stylecam.export import depth_first_shuffles

    path, net = exported[style]
    rewritten = depth_first_shuffles(path.read_bytes())
    modes = lambda data: [a.s for n in onnx.load_from_string(data).graph.node  # noqa: E731
                          if n.op_type == "DepthToSpace" for a in n.attribute if a.name == "mode"]
    assert set(modes(path.read_bytes())) == {b"CRD"} and set(modes(rewritten)) == {b"DCR"}
    assert len(modes(rewritten)) == (3 if style == "tfast2" else 2)  # tfast2: two stages and the RGB output
    sess = ort.InferenceSession(rewritten, providers=["CPUExecutionProvider"])
    x = _input(64, 96, seed=3)
    assert np.abs(sess.run(None, {"input": x})[0] - _torch(net, x)).max() <= TOL


def test_metadata_names_the_style_and_its_size_multiple(exported):
    path, net = exported["tfast"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["stylecam.style"] == "tfast" and meta["stylecam.arch"] == "fast"
    assert meta["stylecam.painting"] == "Test Painting, Nobody, 2026"
    assert meta["stylecam.size_multiple"] == str(net.size_multiple)
    assert "RGB 0..255" in meta["stylecam.io"]


def test_shipped_style_by_name(tmp_path):
    if "gogh" not in weights_io.available_styles():
        pytest.skip("shipped weights not present")
    out = tmp_path / "gogh.onnx"
    assert cli.main(["export", "gogh", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "Starry Night" in meta["stylecam.painting"] and "Gogh" in meta["stylecam.credit"]


def test_bad_style_and_unwritable_output_are_one_line_errors(weights_dir, tmp_path, capsys):
    src = str(weights_dir / "tfast.safetensors")
    assert cli.main(["export", "no_such_style", str(tmp_path / "x.onnx")]) == 2
    assert cli.main(["export", src, str(tmp_path / "missing_dir" / "x.onnx")]) == 2
    assert cli.main(["export", src, str(tmp_path)]) == 2  # a folder, not a file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("stylecam: error:") for line in err)
    assert "does not exist" in err[1] and "is a folder" in err[2]
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(weights_dir, tmp_path, monkeypatch):
    """A failure while writing leaves the previous file intact and no temporary file behind."""
    import stylecam.atomic as atomic
    import stylecam.export as export

    out = tmp_path / "style.onnx"
    out.write_bytes(b"previous")

    def no_space(src, dst):
        assert Path(src).read_bytes() == b"new model" and Path(src).parent == tmp_path  # written beside it
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "onnx_bytes", lambda model, metadata=None: b"new model")
    monkeypatch.setattr(atomic.os, "replace", no_space)
    with pytest.raises(export.StylecamError, match="No space left"):
        export.export(weights_dir / "tfast.safetensors", out)
    assert out.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["style.onnx"]
