"""WeightDropLSTM: the dropped recurrent weights reach nn.LSTM's fused kernel; raw weights stay parameters."""

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from alstm_lightning.layers.weight_drop import WeightDropLSTM

P = 0.5


def _lstm_kwargs(num_layers, bidirectional, proj_size):
    return {"num_layers": num_layers, "bidirectional": bidirectional, "proj_size": proj_size, "dtype": torch.float64}


def _run(module, x, lengths):
    """Forward ``x: (T, B, I)``, packed when ``lengths`` is given; returns ``(output, h, c)`` padded."""
    if lengths is None:
        output, (h, c) = module(x)
        return output, h, c
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    output, (h, c) = module(packed)
    return pad_packed_sequence(output)[0], h, c


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize(
    "num_layers, bidirectional, proj_size", [(1, False, 0), (2, False, 0), (2, True, 0), (1, False, 3)]
)
def test_output_equals_nn_lstm_with_the_dropped_weights(num_layers, bidirectional, proj_size, packed):
    kwargs = _lstm_kwargs(num_layers, bidirectional, proj_size)
    lstm = WeightDropLSTM(4, 5, weight_dropout=P, **kwargs)
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    lengths = torch.tensor([6, 3, 5]) if packed else None
    output, h, c = _run(lstm, x, lengths)
    probe = torch.randn_like(output)
    ((output * probe).sum() + h.sum() + c.square().sum()).backward()

    # The mask is read off the raw weights' gradient: an entry dropped in the forward gets exactly 0.
    reference = nn.LSTM(4, 5, **kwargs)
    reference.load_state_dict(lstm.state_dict())
    masks = {}
    with torch.no_grad():
        for name in lstm.dropped_weight_names:
            masks[name] = (getattr(lstm, name).grad != 0).to(torch.float64)
            assert 0 < masks[name].mean() < 1, f"{name}: some entries dropped, some kept"
            getattr(reference, name).mul_(masks[name] / (1 - P))
    assert set(masks) == {n for n, _ in lstm.named_parameters() if n.startswith("weight_hh_l")}

    ref_output, ref_h, ref_c = _run(reference, x, lengths)
    torch.testing.assert_close(output, ref_output)
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(c, ref_c)

    # Gradients reach the raw weights through the mask: dL/dW_raw = mask / (1-p) * dL/dW_dropped.
    ((ref_output * probe).sum() + ref_h.sum() + ref_c.square().sum()).backward()
    for name, param in lstm.named_parameters():
        expected = getattr(reference, name).grad
        if name in masks:
            expected = expected * masks[name] / (1 - P)
        torch.testing.assert_close(param.grad, expected, msg=name)


def test_masks_differ_between_steps_and_eval_uses_the_raw_weights():
    lstm = WeightDropLSTM(4, 5, num_layers=2, weight_dropout=P)
    plain = nn.LSTM(4, 5, num_layers=2)
    plain.load_state_dict(lstm.state_dict())
    x = torch.randn(6, 3, 4)

    zero_patterns = []
    for _ in range(2):
        lstm.zero_grad()
        lstm(x)[0].sum().backward()
        zero_patterns.append(lstm.weight_hh_l0.grad == 0)
    assert not torch.equal(*zero_patterns), "a new mask every training forward"
    assert not torch.allclose(lstm(x)[0], plain(x)[0])

    lstm.eval()
    torch.testing.assert_close(lstm(x)[0], plain(x)[0], rtol=0, atol=0)
    lstm.train()
    lstm.weight_dropout = 0.0
    torch.testing.assert_close(lstm(x)[0], plain(x)[0], rtol=0, atol=0)


def test_raw_weights_stay_the_registered_parameters():
    lstm = WeightDropLSTM(4, 5, bidirectional=True, weight_dropout=P)
    before = dict(lstm.named_parameters())
    lstm(torch.randn(6, 3, 4))[0].sum().backward()
    after = dict(lstm.named_parameters())
    assert list(after) == [name for name, _ in nn.LSTM(4, 5, bidirectional=True).named_parameters()]
    assert all(after[name] is before[name] and isinstance(after[name], nn.Parameter) for name in before)
    assert lstm.dropped_weight_names == ("weight_hh_l0", "weight_hh_l0_reverse")
    assert all(param.grad is not None for param in after.values())


def _two_ddp_steps(lstm: WeightDropLSTM) -> None:
    """Two SGD steps of ``lstm`` wrapped in DDP; the wrapper (and its reducer) are gone when this returns."""
    model = DistributedDataParallel(lstm)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # a parameter left out of a step would make DDP fail on the next one
        optimizer.zero_grad()
        model(torch.randn(6, 3, 4))[0].sum().backward()
        assert (lstm.weight_hh_l0.grad == 0).any() and (lstm.weight_hh_l0.grad != 0).any()
        optimizer.step()


def test_ddp_reduces_the_raw_weights(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        lstm = WeightDropLSTM(4, 5, weight_dropout=P)
        start = lstm.weight_hh_l0.detach().clone()
        # the DDP wrapper is released before the group is destroyed: a reducer outliving its group
        # destroyed it later from the test's frame, and gloo's teardown then hung once under xdist
        _two_ddp_steps(lstm)
        assert not torch.equal(lstm.weight_hh_l0, start)
    finally:
        dist.destroy_process_group()


def test_repr_and_errors():
    assert "weight_dropout=0.25" in repr(WeightDropLSTM(4, 5, weight_dropout=0.25))
    assert "weight_dropout" not in repr(WeightDropLSTM(4, 5))
    with pytest.raises(ValueError, match=r"WeightDropLSTM: weight_dropout must be in \[0, 1\), got 1.0"):
        WeightDropLSTM(4, 5, weight_dropout=1.0)
    with pytest.raises(TypeError, match="WeightDropLSTM: weight_dropout must be a float"):
        WeightDropLSTM(4, 5, weight_dropout="0.5")
