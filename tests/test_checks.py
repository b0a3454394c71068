"""The shared argument checks: each names the owner and the argument, the expected and the actual value."""

import pytest
import torch

from alstm_lightning.checks import (
    check_float,
    check_fraction,
    check_non_negative,
    check_non_negative_int,
    check_positive,
    check_positive_int,
    check_probability,
    check_token_ids,
)


@pytest.mark.parametrize(
    "check, value",
    [
        (check_float, 0.5),
        (check_float, -3),
        (check_positive, 1e-9),
        (check_non_negative, 0),
        (check_non_negative, 2.5),
        (check_positive_int, 1),
        (check_non_negative_int, 0),
        (check_fraction, 0.5),
        (check_probability, 0.0),
    ],
)
def test_accepts_valid_values(check, value):
    check("Owner", "arg", value)


@pytest.mark.parametrize(
    "check, value, error, message",
    [
        (check_float, True, TypeError, r"Owner: arg must be a float, got bool \(True\)"),
        (check_float, "1", TypeError, r"Owner: arg must be a float, got str \('1'\)"),
        (check_positive, 0.0, ValueError, "Owner: arg must be positive, got 0.0"),
        (check_positive, float("nan"), ValueError, "Owner: arg must be positive, got nan"),
        (check_non_negative, -1e-3, ValueError, "Owner: arg must be non-negative, got -0.001"),
        (check_non_negative, float("nan"), ValueError, "Owner: arg must be non-negative, got nan"),
        (check_positive_int, 2.0, TypeError, r"Owner: arg must be an int, got float \(2.0\)"),
        (check_non_negative_int, -1, ValueError, "Owner: arg must be a non-negative int, got -1"),
        (check_fraction, 1.0, ValueError, r"Owner: arg must be in \(0, 1\), got 1.0"),
        (check_probability, 1.0, ValueError, r"Owner: arg must be in \[0, 1\), got 1.0"),
    ],
)
def test_rejects_invalid_values_naming_the_argument(check, value, error, message):
    with pytest.raises(error, match=message):
        check("Owner", "arg", value)


def test_token_ids_accepts_the_whole_range_and_names_the_bad_one():
    check_token_ids("Owner", "ids", torch.tensor([[0, 4], [2, 3]]), 5)
    check_token_ids("Owner", "ids", torch.zeros(0, dtype=torch.long), 5)  # nothing to check
    for bad, shown in ((5, r"\[0, 5\]"), (-2, r"\[-2, 3\]")):
        with pytest.raises(ValueError, match=rf"Owner: ids must be token ids in \[0, vocab_size=5\), got range {shown}"):
            check_token_ids("Owner", "ids", torch.tensor([0, 3, bad]), 5)
