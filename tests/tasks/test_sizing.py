"""Parameter matching: exact counts against built models, the hidden-size solver, the recipes' sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alstm_lightning import LanguageModelingTask, SizingResult, count_parameters, solve_hidden_size
from alstm_lightning.tasks import ENCODERS

V, E, H, A = 11, 6, 8, 3
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def built_count(**config) -> int:
    return sum(p.numel() for p in LanguageModelingTask(**config).parameters())


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize(("num_layers", "tie_weights"), [(1, False), (2, True), (3, False), (3, True)])
def test_count_equals_the_built_model(encoder, num_layers, tie_weights):
    config = dict(vocab_size=V, encoder=encoder, embedding_size=E, hidden_size=H, adapt_size=A,
                  num_layers=num_layers, tie_weights=tie_weights)
    assert count_parameters(**config) == built_count(**config)


def test_count_at_the_paper_size_equals_the_lstm_formula():
    # embedding 10k x 400 (tied decoder: the table once, plus its bias), LSTM(400 -> 1150), LSTM(1150 -> 400)
    expected = 10_000 * 400 + 10_000 + 4 * 1150 * (400 + 1150 + 2) + 4 * 400 * (1150 + 400 + 2)
    config = dict(vocab_size=10_000, encoder="lstm", embedding_size=400, hidden_size=1150, num_layers=2)
    assert count_parameters(**config) == expected == 13_632_400


SMALL = dict(vocab_size=50, embedding_size=16, adapt_size=8, num_layers=2)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_solver_finds_the_closest_hidden_size(encoder):
    target = count_parameters(encoder="alstm", hidden_size=40, **SMALL)
    result = solve_hidden_size(target, encoder=encoder, **SMALL)
    assert isinstance(result, SizingResult) and result.encoder == encoder and result.target_parameters == target

    def count(hidden_size):
        return count_parameters(encoder=encoder, hidden_size=hidden_size, **SMALL)

    h = result.hidden_size
    assert result.parameters == count(h) == built_count(encoder=encoder, hidden_size=h, **SMALL)
    assert result.unit_step == count(h + 1) - count(h) > 0
    # within half the gap one hidden unit makes, and no neighbour is closer
    assert abs(result.parameters - target) <= result.unit_step / 2
    assert abs(count(h + 1) - target) >= abs(result.parameters - target) <= abs(count(h - 1) - target)
    assert result.relative_gap == (result.parameters - target) / target
    if encoder == "alstm":
        assert (h, result.relative_gap) == (40, 0.0)


def test_solver_starts_a_tied_projected_lstm_at_the_embedding_size():
    target = count_parameters(encoder="lstm_proj", hidden_size=16, **SMALL)  # the smallest: proj_size only narrows
    assert solve_hidden_size(target, encoder="lstm_proj", **SMALL).hidden_size == 16


def test_ptb_lstm_recipe_is_sized_to_the_alstm_recipe():
    """recipes/ptb_lstm.yaml's hidden size is the solver's answer for ptb_alstm.yaml's count (10k words)."""
    alstm = yaml.safe_load((RECIPES / "ptb_alstm.yaml").read_text())["model"]["init_args"]
    lstm = yaml.safe_load((RECIPES / "ptb_lstm.yaml").read_text())["model"]["init_args"]
    architecture = ("embedding_size", "hidden_size", "adapt_size", "num_layers", "tie_weights", "policy_layout")
    target = count_parameters(vocab_size=10_000, encoder="alstm", **{k: alstm[k] for k in architecture})
    assert target == 17_197_800
    shared = {k: lstm[k] for k in ("embedding_size", "num_layers", "tie_weights")}
    result = solve_hidden_size(target, encoder=lstm["encoder"], vocab_size=10_000, **shared)
    assert (lstm["encoder"], lstm["hidden_size"]) == ("lstm", result.hidden_size)
    assert (result.hidden_size, result.parameters, result.unit_step) == (1415, 17_201_420, 14_532)  # the header's numbers


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"target_parameters": 0}, ValueError, "solve_hidden_size: target_parameters must be a positive int, got 0"),
        ({"target_parameters": 1e6}, TypeError, "target_parameters must be an int, got float"),
        ({"target_parameters": True}, TypeError, "target_parameters must be an int, got bool"),
        ({"encoder": "gru"}, ValueError, "encoder must be one of"),
        ({"hidden_size": 8}, TypeError, "task_config must not hold hidden_size"),
        ({"target_parameters": 10}, ValueError, r"target_parameters must be at least \d+, the count at hidden_size=1"),
        ({"num_layers": 1, "tie_weights": True}, ValueError, "parameter count must depend on hidden_size"),
        ({"embedding_size": 0}, ValueError, "embedding_size must be a positive int"),
        ({"hidden_units": 8}, TypeError, "hidden_units"),
    ],
)
def test_solver_rejects_bad_arguments_naming_them(arguments, error, match):
    config = {"target_parameters": 10_000, "encoder": "lstm", "vocab_size": V, "embedding_size": E, **arguments}
    with pytest.raises(error, match=match):
        solve_hidden_size(**config)


def test_count_needs_a_vocabulary_size():
    with pytest.raises(TypeError, match="vocab_size"):
        count_parameters(encoder="lstm")
