"""LanguageModelingTask: shapes, tying, carried state, variable-BPTT learning rate, evaluation, sampling."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from alstm_lightning import AdaptiveState, aLSTM, aRNN
from alstm_lightning.data import CharCorpusDataModule, TinyShakespeareDataModule
from alstm_lightning.data.streams import batchify
from alstm_lightning.layers import LSTMStack
from alstm_lightning.tasks import LanguageModelingTask, make_encoder

V, E, H, A = 11, 6, 8, 3


def tiny_task(**kwargs) -> LanguageModelingTask:
    settings = dict(vocab_size=V, embedding_size=E, hidden_size=H, adapt_size=A, num_layers=2, bptt=5)
    return LanguageModelingTask(**{**settings, **kwargs})


def windows(stream: torch.Tensor, batch_size: int, lengths: list[int] | int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The LM contract's batches: B contiguous streams, consecutive ``(input, target)`` windows of ``(T, B)``.

    ``lengths`` is one length per window, or a fixed length covering the whole stream (last window shorter).
    """
    data = batchify(stream, batch_size)  # (N, B)
    steps = data.size(0)
    if isinstance(lengths, int):
        lengths = [lengths] * math.ceil((steps - 1) / lengths)
    out, start = [], 0
    for T in lengths:
        T = min(T, steps - 1 - start)
        out.append((data[start : start + T], data[start + 1 : start + 1 + T]))
        start += T
    return out


def loader(batches) -> DataLoader:
    return DataLoader(batches, batch_size=None)


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def state_tensors(state) -> list[torch.Tensor]:
    if isinstance(state, (AdaptiveState, list)):  # fields of per-layer tensors, or per-layer (h, c) pairs
        return [t for field in state for t in field]
    return list(state)


@pytest.mark.parametrize("encoder", ["alstm", "arnn", "lstm", "lstm_proj"])
def test_forward_backward_shapes(encoder):
    task = tiny_task(encoder=encoder)
    input, target = torch.randint(0, V, (2, 7, 3)).unbind(0)
    out = task(input)
    assert out.logits.shape == (7, 3, V)
    assert out.output.shape == out.raw_output.shape == (7, 3, E)
    # continuing from the returned state works, and the loss reaches every parameter
    out2 = task(target, out.state)
    (task.loss(out.logits, target) + task.loss(out2.logits, input)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in task.parameters())


@pytest.mark.parametrize("encoder", ["alstm", "arnn", "lstm"])
def test_weight_tying_shares_the_embedding_table(encoder):
    tied = tiny_task(encoder=encoder)
    assert tied.decoder.weight is tied.embedding.weight
    assert tied.decoder.in_features == E
    untied = tiny_task(encoder=encoder, tie_weights=False)
    assert untied.decoder.weight is not untied.embedding.weight
    assert untied.decoder.in_features == H
    assert untied(torch.randint(0, V, (4, 2))).raw_output.shape == (4, 2, H)


def test_projected_lstm_projects_every_layer_to_the_embedding_size():
    assert tiny_task(encoder="lstm_proj").encoder.proj_size == E
    assert tiny_task(encoder="lstm_proj", hidden_size=E).encoder.proj_size == 0
    with pytest.raises(ValueError, match="output_size must be at most hidden_size=5 for name='lstm_proj'"):
        tiny_task(encoder="lstm_proj", hidden_size=E - 1)


def recurrent_widths(encoder: torch.nn.Module) -> list[tuple[int, int]]:
    """(input width, units) of each LSTM layer, in order, read from its ``weight_ih`` / ``weight_hh`` shapes."""
    ih = [p.shape for name, p in encoder.named_parameters() if "weight_ih" in name]
    hh = [p.shape for name, p in encoder.named_parameters() if "weight_hh" in name]
    return [(w_ih[1], w_hh[1]) for w_ih, w_hh in zip(ih, hh)]


@pytest.mark.parametrize(
    ("num_layers", "tie_weights", "widths"),
    [
        (1, True, [(E, E)]),
        (2, True, [(E, H), (H, E)]),
        (3, True, [(E, H), (H, H), (H, E)]),
        (1, False, [(E, H)]),
        (3, False, [(E, H), (H, H), (H, H)]),
    ],
)
def test_lstm_baseline_has_the_alstm_layer_widths(num_layers, tie_weights, widths):
    lstm = tiny_task(encoder="lstm", num_layers=num_layers, tie_weights=tie_weights).encoder
    alstm = tiny_task(encoder="alstm", num_layers=num_layers, tie_weights=tie_weights).encoder
    assert recurrent_widths(lstm) == widths
    assert [alstm.layer_sizes(layer) for layer in range(num_layers)] == widths
    # the stack only where the widths differ: a plain nn.LSTM otherwise (torch's fast path, no proj_size)
    assert type(lstm) is (LSTMStack if len({units for _, units in widths}) > 1 else torch.nn.LSTM)
    assert getattr(lstm, "proj_size", 0) == 0


def test_lstm_stack_parameter_names_shapes_and_count():
    task = tiny_task(encoder="lstm", num_layers=3)
    names = {name: tuple(p.shape) for name, p in task.encoder.named_parameters()}
    expected = {}
    for layer, width in enumerate((E, H)):
        expected |= {
            f"hidden_layers.weight_ih_l{layer}": (4 * H, width),
            f"hidden_layers.weight_hh_l{layer}": (4 * H, H),
            f"hidden_layers.bias_ih_l{layer}": (4 * H,),
            f"hidden_layers.bias_hh_l{layer}": (4 * H,),
        }
    expected |= {
        "output_layer.weight_ih_l0": (4 * E, H),
        "output_layer.weight_hh_l0": (4 * E, E),
        "output_layer.bias_ih_l0": (4 * E,),
        "output_layer.bias_hh_l0": (4 * E,),
    }
    assert names == expected
    encoder_count = 4 * H * (E + H + 2) + 4 * H * (H + H + 2) + 4 * E * (H + E + 2)
    assert sum(p.numel() for p in task.parameters()) == V * E + encoder_count + V  # tied: the table once, + bias


@pytest.mark.parametrize(
    ("name", "kind"), [("alstm", aLSTM), ("arnn", aRNN), ("lstm", LSTMStack), ("lstm_proj", torch.nn.LSTM)]
)
def test_make_encoder_builds_each_encoder(name, kind):
    encoder = make_encoder(name, E, H, A, output_size=E, num_layers=2)
    assert type(encoder) is kind
    output, _ = encoder(torch.randn(4, 3, E))
    assert output.shape == (4, 3, E)
    with pytest.raises(ValueError, match="name must be one of"):
        make_encoder("gru", E, H, A)


@pytest.mark.parametrize("encoder", ["alstm", "lstm"])
def test_hidden_state_is_carried_detached_and_reset(encoder):
    task = tiny_task(encoder=encoder, lr_milestones=())
    calls = []  # (training, hx, final state) of every encoder call

    def record(module, args, output):
        calls.append((task.training, args[1], output[1]))

    task.encoder.register_forward_hook(record)
    train = windows(torch.randint(0, V, (2 * 21,)), 2, 5)  # 4 windows
    val = windows(torch.randint(0, V, (3 * 11,)), 3, 5)  # 2 windows
    fit = trainer(max_epochs=2, num_sanity_val_steps=0, val_check_interval=2)
    fit.fit(task, loader(train), loader(val))
    # each epoch: train 0, 1, val 0, 1 (mid-epoch), train 2, 3, val 0, 1
    assert [training for training, _, _ in calls] == [True, True, False, False, True, True, False, False] * 2
    train_calls = [c for c in calls if c[0]]
    val_calls = [c for c in calls if not c[0]]
    for k, (_, hx, _) in enumerate(train_calls):
        if k % 4 == 0:
            assert hx is None, "training must start each epoch from zeros"
            continue
        previous = train_calls[k - 1][2]  # the previous *training* window, validation in between or not
        assert all(t.grad_fn is not None for t in state_tensors(previous)[:2])
        for got, want in zip(state_tensors(hx), state_tensors(previous)):
            assert got.grad_fn is None and not got.requires_grad
            assert torch.equal(got, want)
    for k, (_, hx, _) in enumerate(val_calls):
        if k % 2 == 0:
            assert hx is None, "validation must start from zeros"
        else:
            assert all(torch.equal(a, b) for a, b in zip(state_tensors(hx), state_tensors(val_calls[k - 1][2])))
    for _ in range(2):  # the second test run must not continue from the first
        calls.clear()
        fit.test(task, loader(val), verbose=False)
        assert calls[0][1] is None and calls[1][1] is not None


def test_variable_bptt_scales_the_learning_rate_for_that_step_only():
    lr, bptt, lengths = 0.01, 5, [3, 8, 5, 2]
    seen = []  # (lr inside the step, lr after it, largest parameter change of the step)

    class Spy(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.before = [p.detach().clone() for p in pl_module.parameters()]
            self.lr = optimizer.param_groups[0]["lr"]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            change = max((p.detach() - b).abs().max().item() for p, b in zip(pl_module.parameters(), self.before))
            seen.append((self.lr, trainer.optimizers[0].param_groups[0]["lr"], change))

    task = tiny_task(bptt=bptt, lr=lr, lr_milestones=(1,), lr_gamma=0.5, weight_decay=0.0)
    fit = trainer(max_epochs=2, callbacks=[Spy()], limit_val_batches=0)
    fit.fit(task, loader(windows(torch.randint(0, V, (2 * 20,)), 2, lengths)))
    scheduled = [lr] * 4 + [lr * 0.5] * 4
    assert [s[0] for s in seen] == pytest.approx([r * T / bptt for r, T in zip(scheduled, lengths * 2)])
    # the epoch's cut happens before the last batch's on_train_batch_end, from the restored rate
    assert [s[1] for s in seen] == pytest.approx(scheduled[:3] + [lr * 0.5] * 5)
    # Adam with beta1 = 0 moves each parameter by lr * g / |g| on its first step: the scaled rate was used
    assert seen[0][2] == pytest.approx(lr * lengths[0] / bptt, rel=1e-4)
    assert fit.lr_scheduler_configs[0].scheduler.get_last_lr() == pytest.approx([lr * 0.5])


@pytest.mark.parametrize(
    ("stage", "batch_size", "level"), [("test", 1, "word"), ("test", 1, "char"), ("val", 3, "word")]
)
def test_evaluation_equals_a_manual_loop_over_the_split(stage, batch_size, level):
    task = tiny_task(level=level, dropout=0.3, input_dropout=0.3, output_dropout=0.3, embedding_dropout=0.2)
    with torch.no_grad():  # far from the near-uniform start, so that the state and the weighting matter
        for p in task.parameters():
            p.normal_()
    stream = torch.randint(0, V, (batch_size * 23,))
    batches = windows(stream, batch_size, 5)  # 4 windows of 5 and one of 2: the token weighting matters
    assert [x.size(0) for x, _ in batches] == [5, 5, 5, 5, 2]
    run = trainer().test if stage == "test" else trainer().validate
    result = run(task, loader(batches), verbose=False)[0]

    task.eval()
    with torch.no_grad():
        hx, total, count, window_means, from_zeros = None, 0.0, 0, [], 0.0
        for input, target in batches:
            logits, hx, _, _ = task(input, hx)
            total += F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum").item()
            count += target.numel()
            window_means.append(F.cross_entropy(logits.flatten(0, 1), target.flatten()).item())
            fresh = task(input).logits.flatten(0, 1)
            from_zeros += F.cross_entropy(fresh, target.flatten(), reduction="sum").item()
        data = torch.cat([batches[0][0][:1]] + [t for _, t in batches])  # the whole split, (N, B)
        whole = F.cross_entropy(task(data[:-1]).logits.flatten(0, 1), data[1:].flatten()).item()
    assert total / count == pytest.approx(whole, rel=1e-5)
    # the checks below can tell a carried state from zeros, and tokens from windows
    assert abs(from_zeros / count - total / count) > 1e-3
    assert abs(sum(window_means) / len(window_means) - total / count) > 1e-3
    assert result[f"{stage}/loss"] == pytest.approx(total / count, rel=1e-5)
    if level == "word":
        assert result[f"{stage}/ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)
    else:
        assert result[f"{stage}/bpc"] == pytest.approx(total / count / math.log(2), rel=1e-5)


def test_generate_samples_vocabulary_tokens_reproducibly():
    task = tiny_task()
    prompt = torch.tensor([1, 4, 2])
    first = task.generate(prompt, 20, generator=torch.Generator().manual_seed(3))
    again = task.generate(prompt, 20, generator=torch.Generator().manual_seed(3))
    other = task.generate(prompt, 20, generator=torch.Generator().manual_seed(4))
    assert first.shape == (20,) and first.dtype == torch.int64
    assert first.min() >= 0 and first.max() < V
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert task.training, "generate must restore the training mode"


def test_generate_top_1_is_greedy_decoding():
    task = tiny_task()
    task.eval()
    ids, expected = torch.tensor([[3], [0]]), []
    with torch.no_grad():
        out = task(ids)
        for _ in range(6):
            token = out.logits[-1, 0].argmax().view(1, 1)
            expected.append(token.item())
            out = task(token, out.state)
    assert task.generate(torch.tensor([3, 0]), 6, temperature=0.5, top_k=1).tolist() == expected


def test_predict_step_returns_per_token_log_probabilities():
    task = tiny_task().eval()
    ids = torch.randint(0, V, (6, 2))
    with torch.no_grad():
        log_probs = task.predict_step(ids)
        nll = F.cross_entropy(task(ids[:-1]).logits.flatten(0, 1), ids[1:].flatten(), reduction="none")
    assert log_probs.shape == (5, 2)
    torch.testing.assert_close(log_probs, -nll.view(5, 2))


def test_regularization_adds_ar_and_tar():
    task = tiny_task(ar_alpha=2.0, tar_beta=1.0)
    out = task(torch.randint(0, V, (5, 2)))
    expected = 2.0 * out.output.pow(2).mean() + (out.raw_output[1:] - out.raw_output[:-1]).pow(2).mean()
    torch.testing.assert_close(task.regularization(out), expected)
    assert tiny_task().regularization(out) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"vocab_size": 0}, ValueError, "vocab_size"),
        ({"bptt": 2.5}, TypeError, "bptt"),
        ({"level": "byte"}, ValueError, "level"),
        ({"encoder": "gru"}, ValueError, "encoder"),
        ({"tie_weights": "yes"}, TypeError, "tie_weights"),
        ({"embedding_dropout": 1.0}, ValueError, "embedding_dropout"),
        ({"input_dropout": -0.1}, ValueError, r"input_dropout must be in \[0, 1\), got -0.1"),
        ({"ar_alpha": -1.0}, ValueError, "ar_alpha"),
        ({"tar_beta": "1"}, TypeError, "tar_beta"),
    ],
)
def test_invalid_hyperparameters_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny_task(**kwargs)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda t: t(torch.rand(4, 2)), TypeError, "input must be an integer tensor"),
        (lambda t: t(torch.zeros(4, dtype=torch.long)), ValueError, "input must have 2 dimensions"),
        (lambda t: t(torch.full((4, 2), V)), ValueError, rf"input must be token ids in \[0, vocab_size={V}\), got range \[{V}, {V}\]"),
        (lambda t: t(torch.full((4, 2), -1)), ValueError, r"input must be token ids in \[0, vocab_size=.*got range \[-1, -1\]"),
        (
            lambda t: t.training_step((torch.zeros(4, 2, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long)), 0),
            ValueError,
            r"target must have its input's shape \(4, 2\), got \(3, 2\)",
        ),
        (lambda t: t.predict_step(torch.zeros(1, 2, dtype=torch.long)), ValueError, "batch must be"),
        (lambda t: t.generate(torch.tensor([0.5]), 3), TypeError, "prompt"),
        (lambda t: t.generate(torch.zeros(2, 2, dtype=torch.long), 3), ValueError, "prompt"),
        (lambda t: t.generate(torch.tensor([V]), 3), ValueError, rf"prompt must be token ids in \[0, vocab_size={V}\)"),
        (lambda t: t.generate(torch.tensor([0]), 0), ValueError, "max_new_tokens"),
        (lambda t: t.generate(torch.tensor([0]), 3, temperature=0.0), ValueError, "temperature"),
        (lambda t: t.generate(torch.tensor([0]), 3, temperature="hot"), TypeError, "temperature"),
        (lambda t: t.generate(torch.tensor([0]), 3, top_k=0), ValueError, "top_k"),
    ],
)
def test_invalid_calls_raise(call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_task())


def test_trains_on_a_char_corpus_datamodule(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("to be or not to be, that is the question.\n" * 20)
    data = CharCorpusDataModule(paths=str(path), batch_size=4, eval_batch_size=2, test_batch_size=1, bptt=8)
    task = tiny_task(vocab_size=data.vocab_size, level=data.level, bptt=data.bptt)
    fit = trainer(fast_dev_run=2, reload_dataloaders_every_n_epochs=1)
    fit.fit(task, datamodule=data)
    assert math.isfinite(fit.callback_metrics["train/bpc"]) and math.isfinite(fit.callback_metrics["val/bpc"])
    assert math.isfinite(fit.test(task, datamodule=data, verbose=False)[0]["test/bpc"])


@pytest.fixture
def one_thread():
    """Run on one thread: this small a model is fastest there, and two threads spin on a busy 2-core machine
    (measured: 300 steps in 4-10 s on one thread, over 60 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_small_alstm_learns_tiny_shakespeare(shared_data, one_thread):
    data = TinyShakespeareDataModule(data_dir=str(shared_data / "tinyshakespeare"), batch_size=32, bptt=16)
    counts = torch.bincount(data.load_corpus().train, minlength=data.vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    unigram_bits = -(p * p.log2()).sum().item()  # about 4.8 bits per character
    task = LanguageModelingTask(
        vocab_size=data.vocab_size,
        level=data.level,
        bptt=data.bptt,
        embedding_size=64,
        hidden_size=64,
        adapt_size=16,
        num_layers=1,
        embedding_dropout=0.0,
        input_dropout=0.0,
        dropout=0.0,
        adapt_dropout=0.0,
        output_dropout=0.0,
        lr=1e-2,
        lr_milestones=(),
    )
    # 300 of about 2000 steps: the epoch, and its validation, never end inside fit
    fit = trainer(max_steps=300, num_sanity_val_steps=0, gradient_clip_val=5.0, reload_dataloaders_every_n_epochs=1)
    fit.fit(task, datamodule=data)
    # the paper's protocol: the whole validation split, 10 streams, the state carried throughout
    bits = fit.validate(task, datamodule=data, verbose=False)[0]["val/bpc"]
    assert bits < unigram_bits - 1.0, f"validation {bits:.2f} bits/char vs unigram entropy {unigram_bits:.2f}"
