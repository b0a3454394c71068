"""Neural cache (Grave et al. 2017): the mixture against a per-step loop, its test-time use in LanguageModelingTask."""

import math

import pytest
import torch

from alstm_lightning.tasks import LanguageModelingTask, NeuralCache
from alstm_lightning.tasks.language_modeling import TEST_TIME_OPTIONS
from tests.tasks.test_language_modeling import V, loader, tiny_task, trainer, windows


def naive_cache_log_probs(h, target, logits, size, theta, lambda_):
    """log p(target_t) of the whole stream, step by step and stream by stream, from the paper's equations."""
    T, B = target.shape
    out = torch.empty(T, B, dtype=torch.float64)
    p_model = logits.double().softmax(-1)
    for b in range(B):
        for t in range(T):
            p = p_model[t, b, target[t, b]]
            cache = range(max(0, t - size), t)  # the `size` steps before t, never t itself
            if len(cache):
                weights = torch.stack([theta * h[t, b].double() @ h[i, b].double() for i in cache]).softmax(0)
                p_cache = sum(w for w, i in zip(weights, cache) if target[i, b] == target[t, b])
                p = (1 - lambda_) * p + lambda_ * p_cache
            out[t, b] = p.log()
    return out


@pytest.mark.parametrize("lambda_", [0.3, 0.1279])
def test_cache_carried_across_windows_matches_a_per_step_loop(lambda_):
    T, B, O, size, theta = 13, 2, 4, 5, 0.662
    h = torch.randn(T, B, O)
    target = torch.randint(0, 3, (T, B))  # 3 of V tokens: the cache holds repeats
    logits = torch.randn(T, B, V)
    expected = naive_cache_log_probs(h, target, logits, size, theta, lambda_)
    cache = NeuralCache(size, theta, lambda_)
    for lengths in ([13], [3, 1, 5, 4], [2] * 6 + [1]):  # window boundaries must not matter
        cache.reset()
        got, start = [], 0
        for n in lengths:
            got.append(cache(h[start : start + n], target[start : start + n], logits[start : start + n]))
            start += n
        torch.testing.assert_close(torch.cat(got).double(), expected)
        assert cache.past_h.shape == (size, B, O) and torch.equal(cache.past_target, target[-size:])
    # the first step (empty cache) is the model's alone; later steps are not
    log_p_model = logits.log_softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(expected[0], log_p_model[0].double())
    assert not torch.allclose(expected[1:], log_p_model[1:].double())


def test_cache_log_probs_survive_large_dot_products():
    # theta * h_t @ h_i = 0.662 * 400 = 265 overflows float32's exp; the log-space mixture does not
    h = torch.ones(4, 1, 400)
    target = torch.tensor([[1], [2], [1], [2]])
    log_p = NeuralCache(10)(h, target, torch.zeros(4, 1, V))
    assert torch.isfinite(log_p).all()
    # equal attention on every cached step: p_cache(1) at step 2 = 1/2 (one of the two steps before it)
    assert log_p[2, 0].item() == pytest.approx(math.log((1 - 0.1279) / V + 0.1279 * 0.5), rel=1e-6)


def random_task(**kwargs) -> LanguageModelingTask:
    """A tiny untrained model with weights far from the near-uniform start, and every dropout on (test turns it off)."""
    task = tiny_task(dropout=0.3, input_dropout=0.3, output_dropout=0.3, embedding_dropout=0.2, **kwargs)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in task.parameters():
            p.normal_(0.0, 0.5)
    return task


def test_lambda_zero_reproduces_static_evaluation_exactly():
    stream = torch.randint(0, V, (40,))
    batches = windows(stream, 2, 6)
    plain = trainer().test(random_task(), loader(batches), verbose=False)[0]
    result = trainer().test(random_task(cache_size=7, cache_lambda=0.0), loader(batches), verbose=False)[0]
    assert set(plain) == {"test/loss", "test/ppl"}
    assert result["test/cache_ppl"] == result["test/ppl"] == plain["test/ppl"]
    assert result["test/cache_loss"] == result["test/loss"] == plain["test/loss"]


def test_cache_lowers_perplexity_on_repeated_text():
    phrase = torch.randint(0, V, (7,))
    batches = windows(phrase.repeat(8), 1, 5)
    result = trainer().test(random_task(cache_size=20), loader(batches), verbose=False)[0]
    # measured: 15.4 against 18.0 with the Penn Treebank defaults
    assert result["test/cache_ppl"] < 0.9 * result["test/ppl"], result
    # at the char level the same mixture is reported in bits per character
    char = trainer().test(random_task(cache_size=20, level="char"), loader(batches), verbose=False)[0]
    assert char["test/cache_bpc"] < char["test/bpc"]


def test_batched_streams_score_as_each_stream_alone():
    streams = [torch.randint(0, 4, (25,)) for _ in range(3)]  # 4 of V tokens: the caches hold repeats
    task = random_task(cache_size=6)
    # windows(…, 3, …) lays its input out as 3 contiguous streams: these three
    batched = trainer().test(task, loader(windows(torch.cat(streams), 3, 4)), verbose=False)[0]
    alone = [trainer().test(task, loader(windows(s, 1, 4)), verbose=False)[0] for s in streams]
    # equal token counts: the batched mean NLL is the mean of the streams' means
    for key in ("test/cache_loss", "test/loss"):
        assert batched[key] == pytest.approx(sum(r[key] for r in alone) / 3, rel=1e-5)
    assert batched["test/cache_loss"] != pytest.approx(batched["test/loss"], rel=1e-3)


def test_cache_result_does_not_depend_on_the_window_length_and_restarts_each_test():
    stream = torch.randint(0, 4, (30,))
    task = random_task(cache_size=8)
    short = trainer().test(task, loader(windows(stream, 1, 3)), verbose=False)[0]
    long = trainer().test(task, loader(windows(stream, 1, 10)), verbose=False)[0]
    again = trainer().test(task, loader(windows(stream, 1, 10)), verbose=False)[0]
    assert short["test/cache_loss"] == pytest.approx(long["test/cache_loss"], rel=1e-5)
    assert again == long, "a second test must start from an empty cache"


def test_test_time_options_stay_out_of_the_checkpoint_hyperparameters():
    # LightningCLI's `test --ckpt_path` puts a checkpoint's hyperparameters over the command line's
    task = tiny_task(cache_size=3, cache_lambda=0.5, dynamic_eval="rms", dynamic_lr=0.1)
    assert not set(TEST_TIME_OPTIONS) & set(task.hparams)
    assert (task.cache_size, task.cache_lambda, task.dynamic_eval, task.dynamic_lr) == (3, 0.5, "rms", 0.1)
    assert (task.neural_cache.size, task.neural_cache.lambda_) == (3, 0.5)


def test_cache_rejects_a_change_of_batch_size_and_mismatched_shapes():
    cache = NeuralCache(4)
    cache(torch.randn(3, 2, 5), torch.zeros(3, 2, dtype=torch.long), torch.randn(3, 2, V))
    with pytest.raises(ValueError, match="batch size must stay 2"):
        cache(torch.randn(3, 1, 5), torch.zeros(3, 1, dtype=torch.long), torch.randn(3, 1, V))
    with pytest.raises(ValueError, match="h and logits"):
        cache(torch.randn(2, 2, 5), torch.zeros(3, 2, dtype=torch.long), torch.randn(3, 2, V))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 0}, ValueError, "size"),
        ({"size": 2.0}, TypeError, "size"),
        ({"theta": -0.1}, ValueError, "theta"),
        ({"theta": "0.6"}, TypeError, "theta"),
        ({"lambda_": 1.0}, ValueError, "lambda_"),
    ],
)
def test_invalid_cache_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        NeuralCache(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cache_size": -1}, ValueError, "cache_size"),
        ({"cache_size": 2.5}, TypeError, "cache_size"),
        ({"cache_theta": -1.0}, ValueError, "cache_theta"),
        ({"cache_theta": None}, TypeError, "cache_theta"),
        ({"cache_lambda": 1.0}, ValueError, "cache_lambda"),
        ({"cache_lambda": "0.1"}, TypeError, "cache_lambda"),
    ],
)
def test_invalid_task_cache_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny_task(**kwargs)
