"""Dynamic evaluation (Krause et al. 2018): the update rules, and their test-time use in LanguageModelingTask."""

import copy

import pytest
import torch
import torch.nn.functional as F

from alstm_lightning.tasks import DynamicEvaluation
from tests.tasks.test_language_modeling import V, loader, tiny_task, trainer, windows
from tests.tasks.test_neural_cache import random_task


def test_sgd_rule_steps_then_pulls_toward_the_start():
    theta_0 = torch.randn(3, 2)
    p = torch.nn.Parameter(theta_0.clone())
    dynamic = DynamicEvaluation([p], "sgd", lr=0.1, decay=0.2)
    g1, g2 = torch.randn(3, 2), torch.randn(3, 2)
    dynamic.step([g1])
    theta_1 = theta_0 - 0.1 * g1  # no pull yet: theta = theta_0
    torch.testing.assert_close(p.detach(), theta_1)
    dynamic.step([g2])
    torch.testing.assert_close(p.detach(), theta_1 - 0.1 * g2 + 0.2 * (theta_0 - theta_1))
    dynamic.restore()
    assert torch.equal(p.detach(), theta_0)


def test_rms_rule_normalises_by_the_running_rms_and_scales_the_pull():
    lr, decay, eps = 0.05, 0.6, 1e-3
    starts = [torch.randn(4), torch.randn(2, 3)]
    params = [torch.nn.Parameter(s.clone()) for s in starts]
    dynamic = DynamicEvaluation(params, "rms", lr=lr, decay=decay, eps=eps)
    theta = [s.clone() for s in starts]
    history = []
    for _ in range(3):
        grads = [torch.randn_like(s) * scale for s, scale in zip(starts, (1.0, 10.0))]
        history.append(grads)
        dynamic.step(grads)
        rms = [torch.stack([h[k] ** 2 for h in history]).mean(0).sqrt() for k in range(2)]
        mean_rms = (rms[0].mean() + rms[1].mean()) / 2  # mean over the tensors of their means
        for k in range(2):
            rate = torch.clamp(decay * rms[k] / mean_rms, max=1.0)
            theta[k] = theta[k] - lr * grads[k] / (rms[k] + eps) + rate * (starts[k] - theta[k])
        for p, expected in zip(params, theta):
            torch.testing.assert_close(p.detach(), expected)
    # the larger tensor's rates are clipped at 1: its pull never overshoots theta_0
    assert (decay * rms[1] / mean_rms).max() > 1
    dynamic.restore()
    assert all(torch.equal(p.detach(), s) for p, s in zip(params, starts)) and dynamic.steps == 0


def test_zero_learning_rate_never_moves_the_weights():
    start = torch.randn(5)
    for rule in ("sgd", "rms"):
        p = torch.nn.Parameter(start.clone())
        dynamic = DynamicEvaluation([p], rule, lr=0.0, decay=0.5)
        for _ in range(3):
            dynamic.step([torch.randn(5)])
        assert torch.equal(p.detach(), start)


@pytest.mark.parametrize("rule", ["sgd", "rms"])
def test_zero_learning_rate_reproduces_static_evaluation_exactly(rule):
    batches = windows(torch.randint(0, V, (41,)), 2, 6)
    plain = trainer().test(random_task(), loader(batches), verbose=False)[0]
    task = random_task(dynamic_eval=rule, dynamic_lr=0.0)
    result = trainer(inference_mode=False).test(task, loader(batches), verbose=False)[0]
    assert set(result) == {"test/dynamic_loss", "test/dynamic_ppl"}, "never logged as static test/loss"
    assert result["test/dynamic_loss"] == plain["test/loss"]
    assert result["test/dynamic_ppl"] == plain["test/ppl"]


def test_sgd_dynamic_evaluation_matches_a_manual_loop_and_restores_the_weights():
    lr, decay = 0.5, 0.1
    task = random_task(dynamic_eval="sgd", dynamic_lr=lr, dynamic_decay=decay)
    before = copy.deepcopy(task.state_dict())
    batches = windows(torch.randint(0, 4, (21,)), 1, 4)
    result = trainer(inference_mode=False).test(task, loader(batches), verbose=False)[0]

    model = copy.deepcopy(task).eval()
    params = list(model.parameters())
    theta_0 = [p.detach().clone() for p in params]
    hx, total, count = None, 0.0, 0
    for input, target in batches:
        out = model(input, hx)
        hx = out.state.detach()
        nll = F.cross_entropy(out.logits.flatten(0, 1), target.flatten())
        total, count = total + nll.item() * target.numel(), count + target.numel()
        grads = torch.autograd.grad(nll, params)  # after scoring: the window never sees its own update
        with torch.no_grad():
            for p, g, p0 in zip(params, grads, theta_0):
                p.copy_(p - lr * g + decay * (p0 - p))
    assert result["test/dynamic_loss"] == pytest.approx(total / count, rel=1e-5)
    static = trainer().test(random_task(), loader(batches), verbose=False)[0]
    assert result["test/dynamic_loss"] != pytest.approx(static["test/loss"], rel=1e-3)
    # the weights are the trained ones again, with no gradient left behind, in the mode they had
    after = task.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in task.parameters())
    assert task.training and task._dynamic is None


def test_one_window_is_scored_before_any_update():
    batches = windows(torch.randint(0, V, (7,)), 1, 6)  # a single window
    static = trainer().test(random_task(), loader(batches), verbose=False)[0]
    task = random_task(dynamic_eval="sgd", dynamic_lr=100.0)
    result = trainer(inference_mode=False).test(task, loader(batches), verbose=False)[0]
    assert result["test/dynamic_loss"] == static["test/loss"]


@pytest.mark.parametrize(("rule", "lr"), [("sgd", 1.0), ("rms", 0.05)])
def test_dynamic_evaluation_lowers_perplexity_on_repeated_text(rule, lr):
    phrase = torch.randint(0, V, (7,))
    batches = windows(phrase.repeat(8), 1, 5)
    plain = tiny_task()
    static = trainer().test(plain, loader(batches), verbose=False)[0]
    task = tiny_task(dynamic_eval=rule, dynamic_lr=lr)
    task.load_state_dict(plain.state_dict())
    result = trainer(inference_mode=False).test(task, loader(batches), verbose=False)[0]
    # measured: 8.6 (sgd) and 8.4 (rms) against 11.0
    assert result["test/dynamic_ppl"] < 0.85 * static["test/ppl"], (result, static)


def test_dynamic_evaluation_combines_with_the_cache():
    batches = windows(torch.randint(0, 4, (21,)), 1, 4)
    task = random_task(dynamic_eval="rms", dynamic_lr=0.0, cache_size=5, cache_lambda=0.0)
    result = trainer(inference_mode=False).test(task, loader(batches), verbose=False)[0]
    assert set(result) == {"test/dynamic_loss", "test/dynamic_ppl", "test/dynamic_cache_loss", "test/dynamic_cache_ppl"}
    assert result["test/dynamic_cache_loss"] == result["test/dynamic_loss"]


def test_inference_mode_is_refused_with_the_fix():
    task = random_task(dynamic_eval="sgd")
    with pytest.raises(RuntimeError, match=r"inference_mode=False \(CLI: --trainer.inference_mode false\)"):
        trainer().test(task, loader(windows(torch.randint(0, V, (11,)), 1, 5)), verbose=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rule": "adam"}, ValueError, "rule"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"lr": "1"}, TypeError, "lr"),
        ({"decay": 1.5}, ValueError, "decay"),
        ({"eps": 0.0}, ValueError, "eps"),
    ],
)
def test_invalid_rule_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        DynamicEvaluation([torch.nn.Parameter(torch.zeros(2))], **{"rule": "sgd", "lr": 0.1, "decay": 0.0, **kwargs})


def test_step_needs_one_gradient_per_parameter():
    dynamic = DynamicEvaluation([torch.nn.Parameter(torch.zeros(2))], "sgd", lr=0.1, decay=0.0)
    with pytest.raises(ValueError, match="gradients must hold one entry per parameter"):
        dynamic.step([])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dynamic_eval": "adam"}, ValueError, "dynamic_eval"),
        ({"dynamic_lr": -0.1}, ValueError, "dynamic_lr"),
        ({"dynamic_lr": "0.1"}, TypeError, "dynamic_lr"),
        ({"dynamic_decay": -0.1}, ValueError, "dynamic_decay"),
        ({"dynamic_decay": 1.5}, ValueError, "dynamic_decay"),
    ],
)
def test_invalid_task_dynamic_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny_task(**kwargs)
