"""Policy layouts: the paper's contiguous split and the original implementation's offsets."""

import pytest
import torch

from alstm_lightning import Project, policy_size, policy_slices, unused_policy_fraction
from alstm_lightning.layers.policy import split_policy

I, H = 5, 3


def test_paper_layout_is_contiguous_and_covers_the_policy():
    slices = policy_slices(I, H, 4, True, "paper")
    assert [(s.start, s.length) for s in slices] == [(0, I), (I, H), (I + H, 4 * H), (I + 5 * H, 4 * H), (I + 9 * H, 4 * H)]
    assert slices[-1].start + slices[-1].length == policy_size(I, H, 4, True) == I + 13 * H
    assert unused_policy_fraction(I, H, 4, True, "paper") == 0.0


@pytest.mark.parametrize("bias", [True, False])
def test_reference_layout_reproduces_the_original_offsets(bias):
    # The statement of the original slicing: pi_x = pi[0:I], pi_h = pi[I:I+H],
    # pi_i = pi[H:5H], pi_hh = pi[4H:8H], pi_b = pi[4H:8H].
    expected = [(0, I), (I, I + H), (H, 5 * H), (4 * H, 8 * H)] + ([(4 * H, 8 * H)] if bias else [])
    slices = policy_slices(I, H, 4, bias, "reference")
    assert [(s.start, s.start + s.length) for s in slices] == expected


def test_reference_layout_leaves_part_of_the_projection_unused():
    size = policy_size(I, H, 4, True)
    used = set()
    for lo, hi in [(0, I), (I, I + H), (H, 5 * H), (4 * H, 8 * H)]:
        used.update(range(lo, hi))
    assert unused_policy_fraction(I, H, 4, True, "reference") == pytest.approx(1 - len(used) / size)
    assert unused_policy_fraction(I, H, 4, True, "reference") > 0.3


def test_split_policy_returns_views_and_none_without_bias():
    pi = torch.randn(2, policy_size(I, H, 1, False))
    parts = split_policy(pi, policy_slices(I, H, 1, False, "paper"))
    assert parts.pi_b is None
    assert parts.pi_hh.shape == (2, H)
    assert parts.pi_x.data_ptr() == pi.data_ptr()


def test_project_is_tanh_of_a_bias_free_linear_map():
    project = Project(4, 7)
    a = torch.randn(3, 4)
    assert project.linear.bias is None
    torch.testing.assert_close(project(a), torch.tanh(a @ project.linear.weight.T))
