"""Sequential image DataModules on tiny files in torchvision's formats, and MNIST-1D."""

import pickle
import random
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from tests.image_files import write_cifar10, write_mnist
from wave_lightning.data import (
    MNIST1D,
    DataCorruptError,
    DataDownloadError,
    DataMissingError,
    NoisySequentialCIFAR10,
    SequentialMNIST,
    default_data_dir,
    pixel_permutation,
)
from wave_lightning.data.mnist import MNIST_MEAN, MNIST_STD
from wave_lightning.data.mnist1d import generate_mnist1d
from wave_lightning.data.sequences import split_indices


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    return root, write_mnist(root)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return root, write_cifar10(root)


def mnist(root, **kwargs) -> SequentialMNIST:
    dm = SequentialMNIST(data_dir=str(root), val_size=10, batch_size=4, **kwargs)
    dm.setup("fit")
    return dm


def cifar(root, **kwargs) -> NoisySequentialCIFAR10:
    kwargs = {"val_size": 6, "batch_size": 4, "verify_md5": False, **kwargs}
    dm = NoisySequentialCIFAR10(data_dir=str(root), **kwargs)
    dm.setup("fit")
    return dm


# ---- sMNIST / psMNIST


def test_smnist_sizes_shapes_and_row_major_pixel_order(mnist_dir):
    root, arrays = mnist_dir
    dm = mnist(root)
    assert (dm.input_size, dm.seq_len, dm.num_classes, dm.output_size) == (1, 784, 10, 10)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 12)
    images, labels = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    for i in (0, 5, 11):
        x, y = dm.test_set[i]
        assert x.shape == (784, 1) and x.dtype == torch.float32
        expected = torch.from_numpy(images[i].reshape(-1).astype(np.float32)) / 255
        assert torch.equal(x[:, 0], expected)
        assert int(y) == labels[i]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 784, 1) and y.shape == (4,)


def test_smnist_normalize_standardises_pixels(mnist_dir):
    root, arrays = mnist_dir
    x, _ = mnist(root, normalize=True).test_set[3]
    raw = torch.from_numpy(arrays["t10k-images-idx3-ubyte"][3].reshape(-1).astype(np.float32))
    torch.testing.assert_close(x[:, 0], (raw / 255 - MNIST_MEAN) / MNIST_STD)


def test_permutation_is_a_bijection_fixed_by_its_seed_alone():
    torch.manual_seed(1)
    first = pixel_permutation(7)
    torch.manual_seed(2)
    torch.rand(100)
    assert torch.equal(pixel_permutation(7), first)
    assert torch.equal(first.sort().values, torch.arange(784))
    assert not torch.equal(pixel_permutation(8), first)
    assert (first != torch.arange(784)).sum() > 700
    assert (
        pixel_permutation(0)[:6].tolist()
        == torch.randperm(784, generator=torch.Generator().manual_seed(0))[:6].tolist()
    )


def test_psmnist_applies_the_seeded_permutation_to_every_split(mnist_dir):
    root, arrays = mnist_dir
    dm = mnist(root, permute=True, permutation_seed=5)
    perm = pixel_permutation(5)
    assert torch.equal(dm.permutation, perm)
    plain = mnist(root)
    for data, plain_data in ((dm.train_set, plain.train_set), (dm.test_set, plain.test_set)):
        for i in (0, 3):
            assert torch.equal(data[i][0], plain_data[i][0][perm])
            assert not torch.equal(data[i][0], plain_data[i][0])
    assert mnist(root).permutation is None


def test_psmnist_permutation_is_saved_and_checked_on_resume(mnist_dir):
    root, _ = mnist_dir
    state = mnist(root, permute=True, permutation_seed=5).state_dict()
    assert state["permutation_seed"] == 5
    assert torch.equal(state["permutation"], pixel_permutation(5))
    mnist(root, permute=True, permutation_seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match="permutation_seed=5"):
        mnist(root, permute=True, permutation_seed=6).load_state_dict(state)
    with pytest.raises(ValueError, match="permute=False"):
        mnist(root).load_state_dict(state)


def test_splits_are_disjoint_complete_and_reproducible(mnist_dir):
    root, arrays = mnist_dir
    train, val = split_indices(40, 10, seed=3)
    assert len(set(train.tolist()) | set(val.tolist())) == 40 and len(val) == 10
    again_train, again_val = split_indices(40, 10, seed=3)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert not torch.equal(split_indices(40, 10, seed=4)[1], val)
    dm = mnist(root, split_seed=3)
    images = torch.from_numpy(arrays["train-images-idx3-ubyte"])
    assert torch.equal(dm.val_set.inputs, images[val])
    assert torch.equal(dm.train_set.inputs, images[train])
    with pytest.raises(ValueError, match="val_size"):
        split_indices(40, 40, seed=0)


def test_missing_mnist_files_name_what_is_expected_where(tmp_path):
    with pytest.raises(DataMissingError) as error:
        mnist(tmp_path)
    message = str(error.value)
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert str(tmp_path / "MNIST" / "raw" / name) in message
    assert "4 of 4 files are missing" in message and "download true" in message


def test_default_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WAVE_LIGHTNING_DATA_DIR", str(tmp_path / "here"))
    assert default_data_dir() == tmp_path / "here"
    assert SequentialMNIST().data_dir == tmp_path / "here"
    monkeypatch.delenv("WAVE_LIGHTNING_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache" / "wave_lightning" / "data"


@pytest.mark.parametrize("damage", ["truncate", "magic"])
def test_corrupt_mnist_file_gives_a_clear_error(tmp_path, damage):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = path.read_bytes()
    path.write_bytes(data[:1000] if damage == "truncate" else b"\x00\x00\x0f\x07" + data[4:])
    with pytest.raises(DataCorruptError, match="cannot be read as idx files"):
        mnist(tmp_path)


def test_download_offline_fails_with_a_clear_message(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    (tmp_path / "kept.txt").write_text("there before")
    for dm in (
        SequentialMNIST(data_dir=str(tmp_path), download=True),
        NoisySequentialCIFAR10(data_dir=str(tmp_path), download=True),
        SequentialMNIST(data_dir=str(tmp_path / "new"), download=True),
    ):
        with pytest.raises(DataDownloadError, match="download into .* failed .*offline") as e:
            dm.prepare_data()
        assert "\n" not in str(e.value)
        assert "Temporary failure in name resolution" in str(e.value)  # the cause, not just
        assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]  # nothing left


# ---- nsCIFAR10


def test_nscifar10_rows_then_noise(cifar_dir):
    root, arrays = cifar_dir
    dm = cifar(root)
    assert (dm.input_size, dm.seq_len, dm.num_classes) == (96, 1000, 10)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (34, 6, 10)
    raw = arrays["test_batch"]
    for i in (0, 7):
        x, y = dm.test_set[i]
        assert x.shape == (1000, 96)
        rows = raw[i].reshape(3, 32, 32).transpose(1, 0, 2).reshape(32, 96)
        assert torch.equal(x[:32], torch.from_numpy(rows.astype(np.float32)) / 255)
        assert int(y) == (5 + i) % 10
    assert torch.equal(x[32:], dm.fixed_noise())


def test_nscifar10_fixed_noise_is_one_tensor_from_its_seed(cifar_dir):
    root, _ = cifar_dir
    dm = cifar(root, noise_seed=3)
    noise = dm.fixed_noise()
    assert noise.shape == (968, 96)
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1) < 0.02
    for data in (dm.train_set, dm.val_set, dm.test_set):
        assert torch.equal(data[0][0][32:], noise) and torch.equal(data[2][0][32:], noise)
    torch.manual_seed(123)
    assert torch.equal(cifar(root, noise_seed=3).fixed_noise(), noise)
    assert not torch.equal(cifar(root, noise_seed=4).fixed_noise(), noise)
    assert torch.equal(cifar(root, noise_seed=3, noise_std=0.5).fixed_noise(), noise * 0.5)


def test_nscifar10_per_sample_noise_is_fresh_in_training_fixed_in_evaluation(cifar_dir):
    root, _ = cifar_dir
    dm = cifar(root, noise="per_sample")
    first, again = dm.train_set[0][0], dm.train_set[0][0]
    assert torch.equal(first[:32], again[:32]) and not torch.equal(first[32:], again[32:])
    for data in (dm.val_set, dm.test_set):
        assert torch.equal(data[1][0], data[1][0])
        assert not torch.equal(data[1][0][32:], data[2][0][32:])
    assert not torch.equal(dm.val_set[0][0][32:], dm.test_set[0][0][32:])
    assert torch.equal(cifar(root, noise="per_sample").test_set[4][0], dm.test_set[4][0])


def test_nscifar10_normalize_and_noise_steps(cifar_dir):
    root, arrays = cifar_dir
    x, _ = cifar(root, normalize=True, noise_steps=10).test_set[2]
    assert x.shape == (42, 96)
    pixels = torch.from_numpy(arrays["test_batch"][2].reshape(3, 32, 32).astype(np.float32)) / 255
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    expected = ((pixels - mean[:, None, None]) / std[:, None, None]).permute(1, 0, 2)
    torch.testing.assert_close(x[:32], expected.reshape(32, 96))
    with pytest.raises(ValueError, match="noise='white'"):
        NoisySequentialCIFAR10(noise="white")


def test_nscifar10_checks_md5_sums_by_default(cifar_dir):
    root, _ = cifar_dir
    with pytest.raises(DataCorruptError, match="data_batch_1, .*failed the md5 check"):
        cifar(root, verify_md5=True)


def test_nscifar10_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataMissingError, match="7 of 7 files are missing"):
        cifar(tmp_path)
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataCorruptError, match="cannot be read as CIFAR10 python batches"):
        cifar(tmp_path)
    batch = {"labels": [0], "data": np.zeros((1, 100), dtype=np.uint8)}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataCorruptError):
        cifar(tmp_path)


# ---- MNIST-1D


def test_mnist1d_matches_the_package_generator_and_leaves_global_rng_alone():
    from mnist1d.data import get_dataset_args, make_dataset

    x, y, x_test, y_test = generate_mnist1d(42, False)
    reference = make_dataset(get_dataset_args())
    assert torch.equal(x, torch.tensor(reference["x"], dtype=torch.float32))
    assert torch.equal(y_test, torch.tensor(reference["y_test"]))
    assert x.shape == (4000, 40) and x_test.shape == (1000, 40)
    assert torch.bincount(y, minlength=10).tolist() == np.bincount(reference["y"]).tolist()
    random.seed(9)
    np.random.seed(9)
    before = (random.random(), np.random.rand())
    random.seed(9)
    np.random.seed(9)
    other = generate_mnist1d.__wrapped__(43, False)
    assert (random.random(), np.random.rand()) == before
    assert not torch.equal(other[0], x)


def test_mnist1d_datamodule_split_and_shapes():
    dm = MNIST1D(val_size=400, split_seed=1)
    dm.setup("fit")
    assert (dm.input_size, dm.seq_len, dm.num_classes) == (1, 40, 10)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3600, 400, 1000)
    x, y, x_test, y_test = generate_mnist1d(42, False)
    train, val = split_indices(4000, 400, seed=1)
    assert torch.equal(dm.val_set[7][0], x[val[7]].unsqueeze(-1))
    assert torch.equal(dm.train_set[0][0], x[train[0]].unsqueeze(-1))
    assert torch.equal(dm.test_set[5][0][:, 0], x_test[5]) and dm.test_set[5][1] == y_test[5]


def test_mnist1d_shuffled_time_is_one_fixed_permutation_of_the_steps():
    x, y, _, _ = generate_mnist1d(42, False)
    shuffled, shuffled_y, _, _ = generate_mnist1d(42, True)
    assert torch.equal(shuffled_y, y)
    # each shuffled column is exactly one original column
    matches = (shuffled[:, :, None] == x[:, None, :]).all(0)
    perm = matches.float().argmax(1)
    assert matches.sum().item() == 40 and sorted(perm.tolist()) == list(range(40))
    assert torch.equal(shuffled, x[:, perm]) and not torch.equal(perm, torch.arange(40))
