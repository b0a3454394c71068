"""Language-modeling batches: B contiguous streams, DDP shards of them, and BPTT windows.

A corpus of ``N`` ids becomes ``B`` streams (the classic *batchify*: trim to a multiple of B and
cut into B contiguous pieces, one per column), each DDP rank keeps its own block of columns, and
training walks down the rows in windows whose lengths follow the variable-BPTT rule of Merity et
al. (2018), used by the aLSTM paper (Flennerhag et al. 2018, Sec. 5.1).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from ..checks import check_bool, check_int, check_positive_int

#: Shortest training window the variable-BPTT rule draws.
MIN_WINDOW = 5
#: Probability that a window's mean length is the full ``bptt`` rather than ``bptt / 2``.
FULL_WINDOW_PROBABILITY = 0.95
#: Standard deviation of a window's length around its mean.
WINDOW_STD = 5.0


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """Lay a token sequence out as ``batch_size`` contiguous streams, one per column.

    The tail that does not fill a full row is dropped (fewer than ``batch_size`` tokens).

    Args:
        ids: ``(N,)`` token ids.
        batch_size: B, the number of streams.

    Returns:
        ``(N // B, B)``: column ``b`` holds ``ids[b * (N // B) : (b + 1) * (N // B)]``.

    Raises:
        ValueError: if ``ids`` is not 1-d or holds fewer than ``2 * B`` tokens (each stream needs an
            input and a target).
    """
    check_positive_int("batchify", "batch_size", batch_size)
    if ids.dim() != 1:
        raise ValueError(f"batchify: ids must be 1-d, got shape {tuple(ids.shape)}")
    steps = ids.numel() // batch_size
    if steps < 2:
        raise ValueError(
            f"batchify: ids must hold at least 2 * batch_size = {2 * batch_size} tokens, got {ids.numel()}"
        )
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous()  # (N // B, B)


def shard_streams(streams: Tensor, rank: int, world_size: int, even: bool = True) -> Tensor:
    """The block of streams DDP rank ``rank`` of ``world_size`` trains (or evaluates) on.

    Streams are laid out for the global batch first, so the ranks together see exactly the data a
    single process with the same global batch sees, and each rank's data is disjoint and contiguous.
    Training needs ``even`` blocks (DDP averages the ranks' gradients with equal weights); evaluation
    does not (its metrics are total NLL over total tokens, summed across ranks), so B = 10 streams
    on 4 ranks are blocks of 3, 3, 2 and 2.

    Args:
        streams: ``(S, B)`` from :func:`batchify`, B the global number of streams.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: W, the number of processes; must divide B when ``even``, else be at most B.
        even: whether every rank must get the same number of streams.

    Returns:
        ``(S, B_r)``: columns ``[floor(rank * B / W), floor((rank + 1) * B / W))``, ``B_r = B / W`` when even.

    Raises:
        ValueError: if W does not divide B (``even``), exceeds it, or ``rank`` is out of range.
    """
    check_positive_int("shard_streams", "world_size", world_size)
    batch_size = streams.size(1)
    if even and batch_size % world_size:
        raise ValueError(
            f"shard_streams: the global batch size must be divisible by world_size={world_size}, got {batch_size}"
        )
    if batch_size < world_size:
        raise ValueError(
            f"shard_streams: the global batch size must be at least world_size={world_size} (a stream per rank), "
            f"got {batch_size}"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"shard_streams: rank must be in [0, {world_size}), got {rank}")
    return streams[:, rank * batch_size // world_size : (rank + 1) * batch_size // world_size]


def bptt_schedule(steps: int, bptt: int, variable: bool = True, seed: int = 0, epoch: int = 0) -> list[int]:
    """The window lengths that cover ``steps - 1`` prediction positions, in order.

    Fixed windows are all ``bptt`` long but the last. Variable windows follow Merity et al. (2018):
    ``base = bptt`` with probability 0.95 else ``bptt / 2``, then
    ``length = max(5, int(normal(base, 5)))``; the last window is cut to what is left. The draws
    come from a generator seeded by ``(seed, epoch)`` alone, so every DDP rank (whose streams have
    the same length) gets the same schedule and the same number of steps.

    Args:
        steps: S, rows of the streams; windows cover targets ``1 .. S-1``.
        bptt: the mean (fixed) window length.
        variable: draw variable lengths (training) instead of fixed ones (evaluation).
        seed: run seed.
        epoch: epoch number; each epoch gets a fresh schedule.

    Returns:
        Window lengths, each ``>= 1``, summing to ``steps - 1``.
    """
    check_positive_int("bptt_schedule", "bptt", bptt)
    # A str seed is hashed with SHA-512 by `random`, so the draws are the same in every process.
    rng = random.Random(f"bptt:{seed}:{epoch}")
    remaining = steps - 1
    lengths = []
    while remaining > 0:
        if variable:
            base = bptt if rng.random() < FULL_WINDOW_PROBABILITY else bptt / 2
            length = max(MIN_WINDOW, int(rng.gauss(base, WINDOW_STD)))
        else:
            length = bptt
        lengths.append(min(length, remaining))
        remaining -= lengths[-1]
    return lengths


class StreamWindows(IterableDataset):
    """BPTT windows over a rank's streams; items are ``(input, target)``, each ``(T, B)``.

    ``target`` is ``input`` shifted one step ahead, and consecutive windows continue each stream,
    so a model may carry its hidden state from one window to the next. Use it in a ``DataLoader``
    with ``batch_size=None`` (items are already batches) and no workers; as an
    ``IterableDataset`` it keeps Lightning from injecting a ``DistributedSampler``.

    Args:
        streams: ``(S, B)`` token ids, this rank's streams.
        bptt: the mean (fixed) window length.
        variable_bptt: draw a fresh variable-length schedule per epoch (training); ``False`` gives
            fixed windows (evaluation).
        seed: seed of the window schedule, together with the epoch.
        world_size: the number of processes the global streams are split across (part of the
            :meth:`layout` a mid-epoch resume must match).

    Shape:
        - input: ``(T, B)`` long, T the window length (the last window may be shorter).
        - target: ``(T, B)`` long.
    """

    def __init__(
        self, streams: Tensor, bptt: int, variable_bptt: bool = False, seed: int = 0, world_size: int = 1
    ) -> None:
        check_positive_int("StreamWindows", "bptt", bptt)
        check_positive_int("StreamWindows", "world_size", world_size)
        check_bool("StreamWindows", "variable_bptt", variable_bptt)
        if streams.dim() != 2 or streams.size(0) < 2:
            raise ValueError(f"StreamWindows: streams must be (S, B) with S >= 2, got shape {tuple(streams.shape)}")
        self.streams = streams
        self.bptt = bptt
        self.variable_bptt = variable_bptt
        self.seed = seed
        self.world_size = world_size
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the window schedule of ``epoch`` from the next iteration on."""
        self.epoch = epoch

    def skip_next(self, windows: int) -> None:
        """Start the next iteration (only that one) after its first ``windows`` windows: resuming mid-epoch.

        Raises:
            ValueError: if ``windows`` is negative or exceeds the epoch's windows.
        """
        check_int("StreamWindows.skip_next", "windows", windows)
        if not 0 <= windows <= len(self):
            raise ValueError(f"StreamWindows.skip_next: windows must be in [0, {len(self)}], got {windows}")
        self._skip = windows

    def layout(self) -> dict[str, object]:
        """What this epoch's windows depend on: the streams' shape and the schedule's settings (plain data)."""
        return {
            "streams": list(self.streams.shape),
            "world_size": self.world_size,
            "bptt": self.bptt,
            "variable_bptt": self.variable_bptt,
            "seed": self.seed,
            "epoch": self.epoch,
        }

    def schedule(self) -> list[int]:
        """The window lengths of the current epoch (see :func:`bptt_schedule`)."""
        return bptt_schedule(self.streams.size(0), self.bptt, self.variable_bptt, self.seed, self.epoch)

    def __len__(self) -> int:
        return len(self.schedule())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        skip, self._skip = self._skip, 0
        start = 0
        for index, length in enumerate(self.schedule()):
            if index >= skip:
                yield self.streams[start : start + length], self.streams[start + 1 : start + 1 + length]
            start += length


class ResumableWindowLoader(DataLoader):
    """A ``DataLoader`` over :class:`StreamWindows` that Lightning can resume mid-epoch.

    Lightning saves a stateful loader's :meth:`state_dict` in its checkpoints and, when a fit
    resumes, calls :meth:`load_state_dict` before iterating again. The state is the number of the
    epoch's windows whose training step has finished, read from ``windows_done`` when saving (the
    loader itself cannot count them: Lightning fetches one window ahead), and the layout those
    windows were cut from (:meth:`StreamWindows.layout`); the next iteration skips them, so the
    resumed epoch continues with the window the interrupted one would have taken. A resume whose
    layout differs (another ``bptt``, batch size, seed or number of processes) is refused, naming
    what differs, since the saved position and hidden state would not mean the same there.

    Args:
        dataset: the windows.
        windows_done: returns the number of this epoch's windows already trained on.
    """

    def __init__(self, dataset: StreamWindows, windows_done: Callable[[], int]) -> None:
        super().__init__(dataset, batch_size=None)
        self.windows_done = windows_done

    def state_dict(self) -> dict[str, object]:
        return {"windows_done": self.windows_done(), "layout": self.dataset.layout()}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        """Skip the saved number of windows in the next iteration, once the layouts agree.

        Raises:
            ValueError: if the checkpoint's layout differs from this loader's, naming each difference.
        """
        saved = state_dict.get("layout")  # absent from checkpoints of earlier versions
        if saved is not None:
            current = self.dataset.layout()
            differences = [f"{key} {saved[key]!r} then, {current[key]!r} now" for key in current if saved.get(key) != current[key]]
            if differences and state_dict["windows_done"] > 0:
                raise ValueError(
                    "ResumableWindowLoader: a mid-epoch checkpoint must be resumed with the data layout it was saved "
                    f"with, got {'; '.join(differences)} (resume with the same bptt, batch size, seed and number of "
                    "processes, or from an end-of-epoch checkpoint)"
                )
        self.dataset.skip_next(state_dict["windows_done"])
