"""The fast net's decoder: with a blur after every pixel shuffle a flat region decodes flat, by construction."""
from __future__ import annotations

import pytest
import torch

from stylecam.models.fast import FastNet

from conftest import SHUFFLE_OUT


def _phased(config: dict) -> FastNet:
    """A net whose shuffles' four phases differ, as after training (the ICNR init starts them equal)."""
    torch.manual_seed(0)
    net = FastNet(**config).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("pw.weight") or name == "out.conv.conv.weight":
                p.add_(torch.randn_like(p) * 0.3)
    return net


def _interior_std(net: FastNet, side: int = 384) -> float:
    """Std of the output over the middle of a flat grey frame (away from the padded borders' reach)."""
    with torch.no_grad():
        y = net(torch.full((1, 3, side, side), 120.0))
    q = side // 2
    return float(y[..., q - 32:q + 32, q - 32:q + 32].std(dim=(-2, -1)).max())


@pytest.mark.parametrize("out_shuffle", [False, True])
def test_blurred_shuffles_decode_a_flat_frame_flat(out_shuffle):
    config = {**SHUFFLE_OUT, "out_shuffle": out_shuffle}
    blurred = _phased(config)
    plain = FastNet(**{**config, "up_blur": False}).eval()
    plain.load_state_dict(blurred.state_dict())  # the blur has no weights: the same net without it
    assert _interior_std(plain) > 0.05  # the phases tile the flat region: the lattice the hatch number sees
    assert _interior_std(blurred) < 1e-3


def test_shuffle_out_config_is_recorded_and_checked():
    net = FastNet(**SHUFFLE_OUT)
    assert net.config["up_blur"] is True and net.config["out_shuffle"] is True
    assert net.output_layer().out_channels == 12  # four phases of RGB
    assert "up_blur" not in FastNet().config  # older weights' configs stay as they were
    with pytest.raises(ValueError, match="out_shuffle"):
        FastNet(n_down=2, out_shuffle=True)
    with pytest.raises(ValueError, match="up_blur"):
        FastNet(up_mode="nearest", up_blur=True)


def _reach(net: FastNet, side: int = 320) -> int:
    """How far (px) from the frame's centre an input pixel still moves the centre output pixel, through the convs
    alone (instance norm's mean and variance would make every pixel reach everywhere)."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.InstanceNorm2d):
                setattr(module, name, torch.nn.Identity())
    x = torch.full((1, 3, side, side), 120.0, requires_grad=True)
    q = side // 2
    net(x)[0, :, q, q].sum().backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    return int(max(q - rows.min(), rows.max() - q))


def test_dilated_blocks_widen_the_reach_and_survive_a_save(tmp_path):
    from stylecam import weights as weights_io

    torch.manual_seed(0)
    plain = FastNet(**SHUFFLE_OUT).eval()
    dilated = FastNet(**SHUFFLE_OUT, dilations=[2, 4]).eval()
    assert "dilations" not in plain.config and dilated.config["dilations"] == [2, 4]
    info = weights_io.StyleInfo(name="dil", arch="fast")
    loaded, _ = weights_io.load(weights_io.save(tmp_path / "dil.safetensors", dilated, info))
    x = torch.rand(1, 3, 96, 128) * 255
    with torch.no_grad():
        assert torch.allclose(loaded(x), dilated(x), atol=1e-3)
    for bad in ([1, 2, 4], [1.5, 2], [0, 2]):
        with pytest.raises(ValueError, match="dilations"):
            FastNet(**SHUFFLE_OUT, dilations=bad)
    # a 3x3 conv at 1/8 scale dilated by d reaches (d - 1) x 8 px further: two convs per block, (1 + 3) x 8 x 2
    assert _reach(dilated) - _reach(plain) == 64


def test_a_skip_list_keeps_only_those_skips_and_survives_a_save(tmp_path):
    from stylecam import weights as weights_io

    def decoder_inputs(net: FastNet, x: torch.Tensor) -> dict:
        seen = {}
        hooks = [getattr(net, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n + " out", o))
                 for n in ("up1", "up2")]
        hooks += [getattr(net, n).register_forward_pre_hook(lambda m, i, n=n: seen.__setitem__(n + " in", i[0]))
                  for n in ("up2", "out")]
        with torch.no_grad():
            net(x)
        for h in hooks:
            h.remove()
        return seen

    x = torch.rand(1, 3, 64, 96) * 255
    torch.manual_seed(0)
    both = FastNet(**SHUFFLE_OUT).eval()
    for skips, skip4, skip2 in (([4], True, False), ([2], False, True), (True, True, True), (False, False, False)):
        net = FastNet(**{**SHUFFLE_OUT, "skips": skips}).eval()
        net.load_state_dict(both.state_dict())
        seen = decoder_inputs(net, x)
        # the 1/4 skip is added before up2, the 1/2 skip before the output stage
        assert torch.equal(seen["up2 in"], seen["up1 out"]) is not skip4
        assert torch.equal(seen["out in"], seen["up2 out"]) is not skip2
    half = FastNet(**{**SHUFFLE_OUT, "skips": [2]}).eval()
    assert half.config["skips"] == [2] and both.config["skips"] is True
    info = weights_io.StyleInfo(name="half", arch="fast")
    loaded, _ = weights_io.load(weights_io.save(tmp_path / "half.safetensors", half, info))
    with torch.no_grad():
        assert torch.allclose(loaded(x), half(x), atol=1e-3)
    for bad in ([], [3], [1, 2]):
        with pytest.raises(ValueError, match="skips"):
            FastNet(**{**SHUFFLE_OUT, "skips": bad})


def test_every_shipped_fast_style_decodes_a_flat_frame_flat():
    """The hatch goal's construction: a shipped style's flat sky or wall cannot come out as the shuffles' lattice."""
    from stylecam import weights as weights_io

    fast = {}
    for path in sorted(weights_io.shipped_styles_dir().glob("*.safetensors")):
        model, _ = weights_io.load(path)
        if isinstance(model, FastNet):
            fast[path.stem] = model.float().eval()
    assert len(fast) >= 12
    for name, net in fast.items():
        assert net.config.get("up_blur"), f"{name}: shuffles without the blur"
        assert _interior_std(net) < 1e-3, name
