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
