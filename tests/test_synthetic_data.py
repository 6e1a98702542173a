"""Copy and adding tasks follow the paper's definitions and are reproducible from their seeds."""

import pytest
import torch

from wave_lightning.data import AddingTask, CopyTask


def setup(task):
    task.setup("fit")
    return task


@pytest.mark.parametrize("delay", [0, 10, 30])
def test_copy_task_definition(delay):
    task = setup(CopyTask(delay=delay, batch_size=16, val_size=64, test_size=32, train_seed=1))
    x, y = next(iter(task.train_dataloader()))
    assert (
        task.seq_len == delay + 20
        and x.shape == (16, delay + 20, 10)
        and y.shape == (16, delay + 20)
    )
    assert torch.equal(x.sum(-1), torch.ones(16, delay + 20))  # one-hot
    symbols = x.argmax(-1)
    assert symbols[:, :10].ge(1).all() and symbols[:, :10].le(8).all()
    assert symbols[:, 10 : 10 + delay].eq(0).all()
    assert symbols[:, 10 + delay].eq(9).all()
    assert symbols[:, 11 + delay :].eq(0).all()
    assert y[:, :-10].eq(0).all() and torch.equal(y[:, -10:], symbols[:, :10])


def test_adding_task_definition():
    task = setup(AddingTask(seq_len=50, batch_size=32, val_size=8, test_size=8, train_seed=0))
    x, y = next(iter(task.train_dataloader()))
    assert x.shape == (32, 50, 2) and y.shape == (32, 1)
    values, markers = x[..., 0], x[..., 1]
    assert values.ge(0).all() and values.lt(1).all()
    assert markers[:, :25].sum(1).eq(1).all() and markers[:, 25:].sum(1).eq(1).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(y[:, 0], (values * markers).sum(1))


def test_sizes_are_exposed_for_the_cli():
    assert (CopyTask.input_size, CopyTask.output_size, CopyTask(delay=5).seq_len) == (10, 10, 25)
    assert (AddingTask.input_size, AddingTask.output_size, AddingTask(seq_len=7).seq_len) == (
        2,
        1,
        7,
    )


def batches(task, first, n=3):
    """Training batches first .. first + n - 1 of the task's stream."""
    stream = task.train_dataloader().dataset
    return [stream.rank_batch(i) for i in range(first, first + n)]


def test_data_are_reproducible_from_their_seeds():
    a = setup(CopyTask(delay=5, data_seed=3, train_seed=7, val_size=16, test_size=16))
    b = setup(CopyTask(delay=5, data_seed=3, train_seed=7, val_size=16, test_size=16))
    c = setup(CopyTask(delay=5, data_seed=4, train_seed=8, val_size=16, test_size=16))
    assert torch.equal(a.val_set.tensors[0], b.val_set.tensors[0])
    assert torch.equal(a.test_set.tensors[1], b.test_set.tensors[1])
    assert not torch.equal(a.val_set.tensors[1], a.test_set.tensors[1])
    assert not torch.equal(a.val_set.tensors[1], c.val_set.tensors[1])
    for (xa, ya), (xb, yb) in zip(batches(a, 200), batches(b, 200), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first = batches(a, 0)
    assert not torch.equal(first[0][1], first[1][1])  # a fresh batch every step
    assert torch.equal(next(iter(a.train_dataloader()))[1], first[0][1])
    assert not torch.equal(batches(c, 0)[0][1], first[0][1])


def test_train_seed_defaults_to_the_training_seed_and_is_checkpointed():
    torch.manual_seed(123)
    task = setup(AddingTask(seq_len=4))
    assert task.train_seed == 123 and task.state_dict() == {"train_seed": 123}
    other = AddingTask(seq_len=4)
    other.load_state_dict(task.state_dict())
    torch.manual_seed(5)
    setup(other)
    assert other.train_seed == 123


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CopyTask(delay=-1), "delay must be >= 0"),
        (lambda: CopyTask(memory_length=0), "memory_length must be a positive integer"),
        (lambda: AddingTask(seq_len=1), "seq_len must be >= 2"),
        (lambda: AddingTask(batch_size=0), "batch_size must be a positive integer"),
    ],
)
def test_bad_task_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
