"""The examples: the digits run's pieces at tiny size, the image recipe's training loop for two steps, and the
column-parallel run on a 2×2 grid of processes against one process."""

import itertools
import json
import os
import pathlib
import pickle
import sys

import numpy as np
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

import column_parallel_barlow_twins as column_parallel  # noqa: E402
import digits_barlow_twins as digits  # noqa: E402
import digits_lejepa  # noqa: E402
from image_recipe import augment  # noqa: E402
from image_recipe import data  # noqa: E402
from image_recipe import lars  # noqa: E402
from image_recipe import linear_eval  # noqa: E402
from image_recipe import resnet  # noqa: E402
from image_recipe import train  # noqa: E402
from image_recipe.common import ShardSampler  # noqa: E402

from tests.utils import run_torchrun  # noqa: E402

# Tiny recipe settings shared by the training tests: 32 synthetic images, batch 8, 4 steps per epoch.
TINY_RECIPE = [
    "--dataset", "synthetic", "--device", "cpu", "--arch", "resnet18", "--width", "4", "--projector", "32-32",
    "--batch-size", "8", "--synthetic-size", "32", "--image-size", "16", "--load-size", "16", "--workers", "0",
    "--print-freq", "1",
]  # fmt: skip


def _read_stats(folder: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "stats.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits_split():
    pytest.importorskip("sklearn")
    return digits.load_digits_split()


def test_digits_split_is_fixed_and_stratified(digits_split):
    split = digits_split
    assert split.train_images.shape == (1347, 1, 8, 8) and split.test_images.shape == (450, 1, 8, 8)
    assert 0.0 <= split.train_images.min() and split.train_images.max() <= 1.0
    train_counts = np.bincount(split.train_labels, minlength=10)
    test_counts = np.bincount(split.test_labels, minlength=10)
    assert np.all(np.abs(test_counts - 0.25 * (train_counts + test_counts)) <= 1)
    again = digits.load_digits_split()
    assert torch.equal(again.test_images, split.test_images)


@pytest.mark.parametrize("fraction", [0.02, 0.1])
def test_labelled_subset_covers_every_class(digits_split, fraction):
    labels = digits_split.train_labels
    subset = digits.labelled_subset(labels, fraction, seed=0)
    assert len(np.unique(subset)) == len(subset)
    assert set(labels[subset].tolist()) == set(range(10))
    assert abs(len(subset) - fraction * len(labels)) <= 10
    assert not np.array_equal(subset, digits.labelled_subset(labels, fraction, seed=1))


def test_labelled_subset_rejects_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        digits.labelled_subset(np.arange(10), 0.0, seed=0)


def test_random_affine_without_motion_is_the_identity():
    images = torch.rand(5, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    same = digits.random_affine(images, generator, degrees=0.0, scale=(1.0, 1.0), shear=0.0, translate=0.0)
    torch.testing.assert_close(same, images, atol=1e-6, rtol=0)


def test_random_erase_sets_a_small_rectangle_to_zero():
    images = torch.ones(64, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    erased = digits.random_erase(images, generator, probability=1.0, max_size=3)
    zeros = (erased == 0).sum((1, 2, 3))
    assert zeros.min() >= 1 and zeros.max() <= 9
    untouched = digits.random_erase(images, generator, probability=0.0)
    assert torch.equal(untouched, images)


def test_augment_is_seeded_in_range_and_random(digits_split):
    images = digits_split.train_images[:32]
    view1 = digits.augment(images, torch.Generator().manual_seed(3))
    again = digits.augment(images, torch.Generator().manual_seed(3))
    other = digits.augment(images, torch.Generator().manual_seed(4))
    assert view1.shape == images.shape
    assert 0.0 <= view1.min() and view1.max() <= 1.0
    assert torch.equal(view1, again)
    assert not torch.allclose(view1, other)


def test_digits_pretraining_steps_change_the_encoder(digits_split):
    torch.manual_seed(0)
    encoder = digits.DigitsEncoder(width=4)
    head = digits.projector(encoder.out_features, 16)
    before = [p.detach().clone() for p in encoder.parameters()]
    losses = digits.pretrain(
        encoder, head, digits_split.train_images[:64], epochs=1, batch_size=32, learning_rate=1e-3,
        weight_decay=0.0, lambd=0.0051, seed=0, progress=False,
    )  # fmt: skip
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert any(not torch.equal(b, p) for b, p in zip(before, encoder.parameters(), strict=True))
    features = digits.embed(encoder, digits_split.test_images[:10])
    assert features.shape == (10, 16) and features.dtype == np.float64
    correlation = digits.view_cross_correlation(encoder, head, digits_split.test_images[:50], seed=0)
    assert correlation.shape == (16, 16)


def test_linear_probe_separates_separable_features():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 5)) * 0.1 + np.eye(3, 5)[labels] * 5
    assert digits.linear_probe_accuracy(features, labels, features, labels) == 1.0


def test_digits_main_end_to_end_at_tiny_size(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    args = [
        "--epochs",
        "1",
        "--width",
        "4",
        "--projector-width",
        "16",
        "--probe-seeds",
        "2",
        "--no-progress",
        "--threads",
        "0",
    ]
    results = digits.main([*args, "--out", str(tmp_path)])
    assert set(results) == {"Barlow Twins encoder", "random encoder", "raw pixels"}
    for by_fraction in results.values():
        assert [len(by_fraction[f]) for f in ("0.02", "0.1", "1")] == [2, 2, 1]
        assert all(0.0 <= a <= 1.0 for values in by_fraction.values() for a in values)
    # Raw pixels on digits are far above chance with all labels (a sanity check of the probe and split).
    assert results["raw pixels"]["1"][0] > 0.9
    for name in ("loss.png", "cross_correlation.png", "probe_accuracy.png", "results.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| raw pixels |" in digits.results_table(results)


def test_digits_lejepa_end_to_end_at_tiny_size(tmp_path):
    """Four views, both methods, one epoch each at a tiny width: the probes run and the record is written."""
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    arguments = ["--epochs", "1", "--width", "4", "--bt-width", "16", "--proj-dim", "4", "--slices", "8"]
    arguments += ["--probe-seeds", "2", "--no-progress", "--threads", "0", "--out", str(tmp_path)]
    results = digits_lejepa.main(arguments)
    assert set(results) == {"LeJEPA encoder", "Barlow Twins encoder", "random encoder", "raw pixels"}
    for by_fraction in results.values():
        assert [len(by_fraction[f]) for f in ("0.02", "0.1", "1")] == [2, 2, 1]
    record = json.loads((tmp_path / "results.json").read_text())
    assert [len(record["losses"][name]) for name in ("LeJEPA", "Barlow Twins")] == [5, 5]  # 1347 // 256 steps
    assert all(np.isfinite(record["losses"][name]).all() for name in record["losses"])
    assert (tmp_path / "losses.png").stat().st_size > 0


def test_digits_lejepa_table_is_that_of_the_committed_run():
    """The table of docs/examples.rst is the committed run's record, made with the default options."""
    record = json.loads((ROOT / "docs" / "_static" / "digits_lejepa" / "results.json").read_text())
    defaults = vars(digits_lejepa.parse_args([]))
    assert {k: v for k, v in record["args"].items() if k not in ("out", "no_progress")} == {
        k: str(v) for k, v in defaults.items() if k not in ("out", "no_progress")
    }
    page = (ROOT / "docs" / "examples.rst").read_text()
    for method, by_fraction in record["accuracy"].items():
        cells = []
        for fraction in ("0.02", "0.1", "1"):
            values = 100 * np.asarray(by_fraction[fraction])
            cells.append(f"{values.mean():.1f} ± {values.std():.1f}" if len(values) > 1 else f"{values[0]:.1f}")
        row = method if method != "Barlow Twins encoder" else "Barlow Twins encoder (4 views)"
        assert f"   * - {row}\n" + "".join(f"     - {cell}\n" for cell in cells) in page, method


# -------------------------------------------------------------------------------------------- recipe pieces


@pytest.mark.parametrize(("build", "features"), [(resnet.resnet18, 32), (resnet.resnet50, 128)])
@pytest.mark.parametrize("small_images", [False, True])
def test_resnet_features(build, features, small_images):
    model = build(width=4, small_images=small_images)
    assert model.out_features == features
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, features)


def test_build_backbone_rejects_unknown_arch():
    with pytest.raises(ValueError, match="arch"):
        resnet.build_backbone("vgg16")


def test_lars_step_matches_its_formula():
    weight = torch.nn.Parameter(torch.randn(4, 3))
    bias = torch.nn.Parameter(torch.randn(4))
    weight.grad, bias.grad = torch.randn(4, 3), torch.randn(4)
    w0, b0 = weight.detach().clone(), bias.detach().clone()
    optimizer = lars.LARS(
        [dict(params=[weight], exclude=False), dict(params=[bias], exclude=True)],
        lr=0.5, weight_decay=0.1, eta=0.01, momentum=0.9,
    )  # fmt: skip
    optimizer.step()
    update = weight.grad + 0.1 * w0
    trust = 0.01 * w0.norm() / update.norm()
    torch.testing.assert_close(weight.detach(), w0 - 0.5 * trust * update)
    torch.testing.assert_close(bias.detach(), b0 - 0.5 * bias.grad)  # no weight decay, no trust ratio
    optimizer.step()  # momentum: the second step moves by (1 + 0.9) times the same gradient for the bias
    torch.testing.assert_close(bias.detach(), b0 - 0.5 * bias.grad * 2.9)


def test_lars_groups_exclude_biases_and_norms_and_scale_with_batch():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2, bias=False))
    weights, biases = lars.lars_parameter_groups(model, batch_size=512)
    assert [p.shape for p in weights["params"]] == [(4, 3), (2, 4)]
    assert [p.shape for p in biases["params"]] == [(4,), (4,), (4,)]
    assert weights["lr"] == pytest.approx(0.4) and biases["lr"] == pytest.approx(0.0096)
    assert biases["exclude"] and not weights["exclude"]


def test_learning_rate_warms_up_then_decays():
    factors = [lars.learning_rate_factor(s, total_steps=100, warmup_steps=10) for s in range(101)]
    assert factors[0] == 0 and factors[5] == pytest.approx(0.5) and factors[10] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[100] == pytest.approx(0.001)


def test_random_resized_crop_of_the_whole_image_is_the_identity_or_its_mirror():
    images = torch.rand(3, 3, 16, 16)
    kept = augment.random_resized_crop(images, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_probability=0.0)
    torch.testing.assert_close(kept, images, atol=1e-5, rtol=0)
    mirrored = augment.random_resized_crop(images, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_probability=1.0)
    torch.testing.assert_close(mirrored, images.flip(-1), atol=1e-5, rtol=0)


def test_random_resized_crop_keeps_the_area_share_in_range():
    # A horizontal ramp: the crop's mean column position tells where it is; values stay inside the image.
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(256, 3, 64, 64)
    crops = augment.random_resized_crop(ramp, 8, scale=(0.08, 0.2))
    spread = crops[:, 0].amax((1, 2)) - crops[:, 0].amin((1, 2))
    assert spread.max() <= 0.6  # a crop at most sqrt(0.2 · 4/3) ≈ 52% of the width
    assert crops.min() >= 0 and crops.max() <= 1


def test_hsv_round_trip():
    images = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(augment.hsv_to_rgb(augment.rgb_to_hsv(images)), images, atol=1e-5, rtol=0)


def test_blur_keeps_constant_images_and_solarize_inverts_bright_pixels():
    constant = torch.full((2, 3, 12, 12), 0.3)
    blurred = augment.gaussian_blur(constant, torch.tensor([0.5, 2.0]), kernel_size=5)
    torch.testing.assert_close(blurred, constant)
    values = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    torch.testing.assert_close(augment.solarize(values), torch.tensor([0.2, 0.5, 0.1]).view(1, 3, 1, 1))


def test_two_views_of_uint8_images():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    view1, view2 = augment.two_views(images, 16)
    assert view1.shape == view2.shape == (6, 3, 16, 16)
    assert view1.dtype == torch.float32 and torch.isfinite(view1).all() and not torch.allclose(view1, view2)
    assert augment.blur_kernel_size(224) == 23 and augment.blur_kernel_size(32) == 3


def test_cifar10_reads_the_python_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [*data.CIFAR_TRAIN_FILES, *data.CIFAR_TEST_FILES]:
        batches[name] = {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [1, 7, 9]}
        with open(folder / name, "wb") as file:
            pickle.dump(batches[name], file)
    train_set = data.cifar10(tmp_path, "train")  # the parent folder works too
    assert len(train_set) == 15 and train_set.num_classes == 10
    image, label = train_set[4]
    row = batches["data_batch_2"][b"data"][1]
    assert label == 7 and image.dtype == torch.uint8
    # Channel-major rows: 1024 red values, then green, then blue, each 32×32 row by row.
    assert torch.equal(image[1, 2], torch.from_numpy(row[1024 + 64 : 1024 + 96]))
    assert len(data.cifar10(folder, "val")) == 3
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        data.cifar10(folder, "val")


def test_image_folder_reads_and_squares_images(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    for index, (name, size) in enumerate([("cat", (40, 30)), ("dog", (20, 50))]):
        (tmp_path / name).mkdir()
        image_module.new("RGB", size, color=(200, 10 * index, 0)).save(tmp_path / name / "a.png")
    folder = data.ImageFolder(tmp_path, load_size=16)
    assert folder.classes == ["cat", "dog"] and len(folder) == 2
    image, label = folder[1]
    assert label == 1 and image.shape == (3, 16, 16) and image.dtype == torch.uint8
    assert image[0].float().mean() == pytest.approx(200, abs=2)


def test_synthetic_images_are_deterministic():
    dataset = data.SyntheticImages(size=20, load_size=8)
    image, label = dataset[13]
    assert label == 3 and image.shape == (3, 8, 8)
    assert torch.equal(image, dataset[13][0])


def test_shard_sampler_gives_disjoint_equal_shards_and_resumes_mid_epoch():
    shards = []
    for rank in range(3):
        sampler = ShardSampler(50, rank=rank, world_size=3, batch_size=4, seed=0)
        sampler.set_epoch(2)
        shards.append(list(sampler))
    assert [len(shard) for shard in shards] == [16, 16, 16]  # 4 whole batches each, the remainder dropped
    assert len(set().union(*shards)) == 48
    sampler = ShardSampler(50, rank=1, world_size=3, batch_size=4, seed=0)
    sampler.set_epoch(2, start_batch=3)
    assert list(sampler) == shards[1][12:] and len(sampler) == 4
    sampler.set_epoch(3)
    assert list(sampler) != shards[1]
    with pytest.raises(ValueError, match="global batch"):
        ShardSampler(10, rank=0, world_size=3, batch_size=4)


# ----------------------------------------------------------------------------------------- recipe training


def test_recipe_trains_two_steps_then_resumes(tmp_path):
    result = train.main([*TINY_RECIPE, "--max-steps", "2", "--out", str(tmp_path)])
    assert result["step"] == 2 and all(np.isfinite(result["losses"]))
    state = torch.load(tmp_path / "checkpoint.pth", weights_only=False)
    assert state["step"] == 2 and state["epoch"] == 0
    resumed = train.main([*TINY_RECIPE, "--max-steps", "3", "--out", str(tmp_path)])
    assert resumed["step"] == 3 and len(resumed["losses"]) == 1
    assert any(record.get("event") == "resume" and record["step"] == 2 for record in _read_stats(tmp_path))


def test_recipe_epoch_then_linear_evaluation(tmp_path):
    result = train.main([*TINY_RECIPE, "--epochs", "1", "--out", str(tmp_path / "pretrain")])
    assert result == dict(step=4, epoch=1, losses=result["losses"])
    assert any("online_probe_top1" in record for record in _read_stats(tmp_path / "pretrain"))
    evaluation = linear_eval.main([
        "--pretrained", str(tmp_path / "pretrain" / "backbone.pth"), "--dataset", "synthetic", "--device", "cpu",
        "--batch-size", "8", "--synthetic-size", "32", "--image-size", "16", "--load-size", "16", "--workers", "0",
        "--epochs", "1", "--max-steps", "2", "--out", str(tmp_path / "eval"),
    ])  # fmt: skip
    assert evaluation["step"] == 2 and evaluation["images"] == 8
    assert 0.0 <= evaluation["top1"] <= evaluation["top5"] <= 1.0


@pytest.mark.distributed
def test_recipe_trains_two_steps_under_torchrun(tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    environment["OMP_NUM_THREADS"] = "1"
    arguments = [
        "--nproc_per_node=2",
        str(EXAMPLES / "image_recipe" / "train.py"), *TINY_RECIPE, "--max-steps", "2", "--out", str(tmp_path),
    ]  # fmt: skip
    completed = run_torchrun(arguments, env=environment, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = _read_stats(tmp_path)
    assert records[0]["world_size"] == 2 and records[0]["global_batch"] == 8
    assert records[-1] == {**records[-1], "event": "end", "step": 2}
    assert torch.load(tmp_path / "checkpoint.pth", weights_only=False)["step"] == 2


# ------------------------------------------------------------------------------------------- column parallel

#: Small settings of the column-parallel example: uneven rows (32 + 31) and uneven columns (49 + 48) on 2×2, in
#: float64, where the two runs agree to rounding (in float32, AdamW's normalized steps amplify the rounding
#: differences of the reductions to about 1e-4 after a few steps, as much as float32 itself differs from float64).
TINY_COLUMN_PARALLEL = [
    "--steps", "4", "--batch-size", "63", "--width", "4", "--hidden", "32", "--embedding-dim", "97", "--log-every", "1",
    "--dtype", "float64", "--no-probe",
]  # fmt: skip


def test_column_slices_cover_the_features_in_order():
    slices = [column_parallel.own_slice(97, 2, index) for index in range(2)]
    assert slices == [slice(0, 49), slice(49, 97)]
    assert [column_parallel.own_slice(5, 3, index) for index in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 5)]


@pytest.mark.distributed
def test_column_parallel_grid_trains_as_one_process(tmp_path):
    """2 row ranks × 2 feature ranks give the losses of one process on the full model, step after step.

    The losses after the first step depend on every gradient: the loss's over the grid, the sum over the feature
    group of the backbone's gradient and DDP's average over the row group (without any of them they differ).
    """
    pytest.importorskip("sklearn")
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    one_process = column_parallel.main([*TINY_COLUMN_PARALLEL, "--single-process"])
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    environment["OMP_NUM_THREADS"] = "1"
    output = tmp_path / "losses.json"
    arguments = [
        "--nproc-per-node=4", str(EXAMPLES / "column_parallel_barlow_twins.py"), *TINY_COLUMN_PARALLEL,
        "--out", str(output),
    ]  # fmt: skip
    completed = run_torchrun(arguments, env=environment, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    saved = json.loads(output.read_text())
    assert saved["grid"] == [2, 2]
    assert len(saved["losses"]) == len(one_process) == 4
    np.testing.assert_allclose(saved["losses"], one_process, rtol=1e-9)
    assert len(set(one_process)) == 4  # the model trains: every step has its own loss
