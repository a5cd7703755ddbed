"""The training package: fine-tuning the bundled Lite0 on a small generated
folder, the exported folder in timm and in the app's registry, predict,
scratch on the digits, and every bad input's one-sentence message. Kept
small: a few seconds of training in all (the 2-process run is in
tests/test_training_ddp.py)."""
import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import models
import training
from training import data as datasets
from training import recipes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
# Three visibly different photos: a cat, a rocket launch, coins.
CLASS_PHOTOS = {"cat": "cat.jpg", "rocket": "rocket.jpg", "coins": "coins.png"}
PER_CLASS = 10


def make_class_folder(root: Path, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    """One sub-folder per photo, each with random crops (half of them flipped) of it."""
    rng = np.random.default_rng(seed)
    for name, photo in CLASS_PHOTOS.items():
        folder = root / name
        folder.mkdir(parents=True)
        with Image.open(EXAMPLES / photo) as img:
            img = img.convert("RGB")
        w, h = img.size
        for i in range(per_class):
            side = int(min(w, h) * rng.uniform(0.5, 0.9))
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = img.crop((x, y, x + side, y + side)).resize((96, 96))
            if i % 2:
                crop = ImageOps.mirror(crop)
            crop.save(folder / f"{name}_{i}.jpg", quality=90)
    return root


# Every training here on one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """Lite0 fine-tuned for 3 epochs (frozen backbone, cached features) on
    the generated folder, with a corrupt JPEG and a text file among the
    images (skipped and counted)."""
    root = tmp_path_factory.mktemp("finetune")
    data = make_class_folder(root / "data")
    (data / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (data / "rocket" / "notes.txt").write_text("not an image")
    run = training.finetune(data, root / "out", "efficientnet_lite0", epochs=3, lr=0.05, batch_size=8,
                            augment=False, seed=0, progress=False)
    return root, data, run


def test_finetune_lite0_reaches_90_percent_in_3_epochs(finetuned):
    _, _, run = finetuned
    m = run.metrics
    assert len(m["epochs"]) <= 3
    assert m["val_accuracy"] >= 0.90, m["val_accuracies"]
    assert m["cached_features"] is True
    assert m["skipped_files"] == 2 and sorted(Path(s).name for s in m["skipped"]) == ["broken.jpg", "notes.txt"]
    assert sorted(m["classes"]) == ["cat", "coins", "rocket"]
    assert m["val_images"] == 6 and m["train_images"] == 24  # a stratified 80/20 split
    assert np.asarray(m["confusion_matrix"]).sum() == 6


def test_output_folder_has_every_file(finetuned):
    _, _, run = finetuned
    names = {p.name for p in run.out.iterdir()}
    assert {"model.safetensors", "config.json", "metrics.json", "curves.png", "confusion_matrix.png",
            "samples.png"} <= names
    metrics = json.loads((run.out / "metrics.json").read_text())
    for key in ("classes", "train_loss", "val_loss", "val_accuracies", "lr", "val_accuracy", "per_class_accuracy",
                "confusion_matrix", "seconds"):
        assert key in metrics
    for png in ("curves.png", "confusion_matrix.png", "samples.png"):
        with Image.open(run.out / png) as img:
            assert img.width > 200 and img.height > 100


def test_export_loads_in_timm_with_the_same_logits(finetuned):
    timm = pytest.importorskip("timm")
    _, _, run = finetuned
    reference = timm.create_model(f"local-dir:{run.out}", pretrained=True).eval()
    ours = recipes.load_trained(run.out)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (reference(x) - ours(x)).abs().max().item() <= 1e-4
    assert reference.pretrained_cfg["label_names"] == run.metrics["classes"]


def test_export_registers_in_the_app(finetuned, monkeypatch):
    _, _, run = finetuned
    name = models.register_model_folder(run.out, "my_photos")
    try:
        assert "my_photos" in models.list_models()
        spec = models.get_spec("my_photos")
        assert spec.labels == tuple(run.metrics["classes"]) and models.weights_status(name) == "trained"
        model = models.create_model(name, pretrained=True)
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            assert torch.allclose(model(x), recipes.load_trained(run.out)(x), atol=1e-5)
        with pytest.raises(ValueError, match="taken"):
            models.register_model_folder(run.out, "efficientnet_lite0")
    finally:
        models.forget_model("my_photos")
    assert "my_photos" not in models.list_models()


def test_predict_writes_the_csv(finetuned, tmp_path):
    _, data, run = finetuned
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(data.rglob("*"))[:8]:
            if p.is_file():
                z.write(p, f"photos/{p.parent.name}/{p.name}")
    summary = training.predict(archive, run.out, tmp_path / "out.csv", top_k=2, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert len(rows) == summary["images"] > 0
    assert set(rows[0]) == {"file", "class_1", "probability_1", "class_2", "probability_2"}
    assert all(float(r["probability_1"]) >= float(r["probability_2"]) for r in rows)
    correct = sum(r["class_1"] == Path(r["file"]).name.split("_")[0] for r in rows)
    assert correct >= 0.8 * len(rows)


def test_finetune_unfrozen_with_augmentation_runs(tmp_path):
    """The augmented, unfrozen path (one short epoch): trains every parameter."""
    data = make_class_folder(tmp_path / "data", per_class=4)
    before = models.create_model("efficientnet_lite0", pretrained=True).stem.conv.weight.detach().clone()
    run = training.finetune(data, tmp_path / "out", epochs=1, batch_size=8, train_all=True, progress=False,
                            plots=False)
    after = recipes.load_trained(run.out).stem.conv.weight
    assert not torch.equal(before, after)
    assert run.metrics["cached_features"] is False and len(run.metrics["epochs"]) == 1


TINY_SWIN = dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4, patch_size=2, image_size=16)


def test_scratch_digits_one_epoch_writes_every_file(tmp_path):
    timm = pytest.importorskip("timm")
    run = training.scratch(tmp_path / "digits", "digits", epochs=1, lr=2e-3, progress=False, **TINY_SWIN)
    names = {p.name for p in run.out.iterdir()}
    assert names == {"model.safetensors", "config.json", "metrics.json", "curves.png", "confusion_matrix.png",
                     "samples.png"}
    m = run.metrics
    assert m["classes"] == [str(d) for d in range(10)] and len(m["epochs"]) == 1
    assert m["val_images"] + m["train_images"] == 1797 and 350 <= m["val_images"] <= 370  # 80/20 per class
    assert len(m["per_class_accuracy"]) == 10 and np.asarray(m["confusion_matrix"]).shape == (10, 10)
    reference = timm.create_model(f"local-dir:{run.out}", pretrained=True).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert (reference(x) - recipes.load_trained(run.out)(x)).abs().max().item() <= 1e-4


def test_cosine_factor_is_the_seeds():
    assert training.cosine_factor(0, 10, 0.01) == pytest.approx(1.0)
    assert training.cosine_factor(5, 10, 0.01) == pytest.approx(0.505)
    assert training.cosine_factor(10, 10, 0.01) == pytest.approx(0.01)


def test_stratified_split_is_seeded_and_stratified():
    labels = [0] * 10 + [1] * 5 + [2] * 2
    train, val = training.stratified_split(labels, 0.2, seed=3)
    assert training.stratified_split(labels, 0.2, seed=3) == (train, val)
    assert sorted(train + val) == list(range(17))
    assert [sum(labels[i] == c for i in val) for c in range(3)] == [2, 1, 1]


def test_fit_stops_when_asked_and_keeps_a_checkpoint():
    """Cancel: stops after the current step; the weights evaluated so far are kept."""
    x, y = torch.randn(64, 5), torch.randint(0, 2, (64,))
    data = torch.utils.data.TensorDataset(x, y)
    steps = []

    def should_stop():
        steps.append(1)
        return len(steps) >= 3
    result = training.fit(lambda: torch.nn.Linear(5, 2), data, data, training.Recipe(epochs=5, batch_size=8),
                          should_stop=should_stop, progress=False)
    assert result.cancelled and result.steps == 3 and len(result.history) == 1 and result.history[0]["partial"]


# --------------------------------------------------------------------------
# Bad input: one sentence each, nothing trained lost
# --------------------------------------------------------------------------

def one_sentence(message: str) -> bool:
    return message.endswith(".") and message.count(". ") == 0 and "\n" not in message


def refused(tmp_path, data, match, **kwargs):
    with pytest.raises(training.TrainingInputError, match=match) as info:
        training.finetune(data, tmp_path / "out", progress=False, **kwargs)
    assert one_sentence(str(info.value)), str(info.value)
    return str(info.value)


def test_empty_folder(tmp_path):
    (tmp_path / "data").mkdir()
    refused(tmp_path, tmp_path / "data", "no class folders")


def test_folder_without_images(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        (tmp_path / "data" / c / "readme.txt").write_text("x")
    refused(tmp_path, tmp_path / "data", "no readable images .*2 unreadable files skipped")


def test_one_class(tmp_path):
    make_class_folder(tmp_path / "all", per_class=2)
    data = tmp_path / "data"
    (tmp_path / "all" / "cat").rename(tmp_path / "cat")
    data.mkdir()
    (tmp_path / "cat").rename(data / "cat")
    refused(tmp_path, data, "only one class")


def test_class_with_one_image(tmp_path):
    data = make_class_folder(tmp_path / "data", per_class=2)
    (data / "cat" / "cat_1.jpg").unlink()
    refused(tmp_path, data, "class cat has only one image")


def test_more_classes_than_images(tmp_path):
    data = tmp_path / "data"
    for i in range(3):
        (data / f"c{i}").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(data / "c0" / "a.png")
    Image.new("RGB", (8, 8)).save(data / "c1" / "b.png")
    refused(tmp_path, data, "more classes")


def _zip(path: Path, entries: dict) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, payload in entries.items():
            z.writestr(name, payload)
    return path


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()


def test_nested_zip(tmp_path):
    inner = _zip(tmp_path / "inner.zip", {"a/x.png": _png()}).read_bytes()
    refused(tmp_path, _zip(tmp_path / "outer.zip", {"a/x.png": _png(), "b/inner.zip": inner}), "another zip")


def test_path_traversal_in_zip(tmp_path):
    archive = _zip(tmp_path / "evil.zip", {"a/x.png": _png(), "../../escaped.png": _png()})
    refused(tmp_path, archive, "outside its folder")
    assert not (tmp_path.parent / "escaped.png").exists()


def test_zip_bomb(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", {"a/x.png": _png(), "b/zeros.png": b"\0" * (64 * 2**20)})
    assert archive.stat().st_size < 2**20
    refused(tmp_path, archive, "zip bomb")


def test_name_clash_with_a_registry_model():
    for name in ("efficientnet_lite0", "swin_t", "swin_digits"):
        with pytest.raises(training.TrainingInputError, match="taken") as info:
            training.check_model_name(name)
        assert one_sentence(str(info.value))
    assert training.check_model_name("my_model") == "my_model"


def test_second_training_is_refused_while_one_runs(tmp_path):
    data = make_class_folder(tmp_path / "data", per_class=2)
    with recipes.busy():
        assert training.training_running()
        message = refused(tmp_path, data, "already running")
    assert "wait" in message and not training.training_running()


def test_existing_output_folder_is_never_overwritten(finetuned, tmp_path):
    _, data, run = finetuned
    before = (run.out / "model.safetensors").read_bytes()
    with pytest.raises(training.TrainingInputError, match="not empty"):
        training.finetune(data, run.out, progress=False)
    assert (run.out / "model.safetensors").read_bytes() == before


# --------------------------------------------------------------------------
# The bundled digits Swin
# --------------------------------------------------------------------------

def test_bundled_swin_digits_works_offline_and_classifies_the_example_digits(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.weights_status("swin_digits") == "bundled"
    model = models.create_model("swin_digits", pretrained=True)
    transform = models.create_transform(model.spec)
    for digit in (2, 3, 7):
        with Image.open(EXAMPLES / f"digit_{digit}.png") as img:
            probabilities = model(transform(img.convert("RGB"))[None]).softmax(dim=1)[0]
        assert model.spec.labels[int(probabilities.argmax())] == str(digit)
    recorded = json.loads((ROOT / "assets" / "models" / "swin_digits" / "metrics.json").read_text())
    assert recorded["val_accuracy"] >= 0.97
    assert (ROOT / "assets" / "models" / "swin_digits" / "COMMAND").read_text().count("--seed 0") == 1


def test_inside_swin_views_of_the_trained_digits_swin():
    from demo import gate
    from demo.service import InferenceService, Settings
    from demo.ui import Callbacks

    callbacks = Callbacks(InferenceService(Settings.from_env()))
    image = gate.open_server_file(EXAMPLES / "digit_3.png")
    *pictures, summary = callbacks.swin_views(image, "swin_digits", 0, 1, "mean", 8, 8, progress=None)
    assert "untrained" not in summary and "16 x 16 model input" in summary
    # PNG files (demo/outputs.py), each at least 100 pixels high
    assert all(p is not None and Image.open(p).size[1] > 100 for p in pictures)


def test_fit_is_seeded_and_gives_the_global_random_streams_back():
    """fit seeds its run (two runs agree) and leaves torch's and numpy's global
    streams as they were: the server's other threads are not reset to its seed."""
    import numpy as np

    x, y = torch.randn(64, 5), torch.randint(0, 2, (64,))
    data = torch.utils.data.TensorDataset(x, y)

    def run():
        factory = lambda: torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(5, 2))  # noqa: E731
        model = training.fit(factory, data, data, training.Recipe(epochs=2, batch_size=8, seed=7),
                             progress=False).model
        return model[1].weight.detach().clone()

    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_numpy = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    first = run()
    assert torch.equal(torch.rand(3), expected_torch) and np.array_equal(np.random.rand(3), expected_numpy)
    assert torch.equal(run(), first)


@pytest.mark.parametrize("field, value, says", [
    ("epochs", 0, "at least 1 epoch"), ("epochs", -2, "at least 1 epoch"), ("epochs", 1.5, "at least 1 epoch"),
    ("lr", 0.0, "finite number above 0"), ("lr", -0.1, "finite number above 0"),
    ("lr", float("nan"), "finite number above 0"), ("lr", float("inf"), "finite number above 0"),
])
def test_a_recipe_without_an_epoch_or_a_usable_learning_rate_is_one_sentence(field, value, says):
    with pytest.raises(training.TrainingInputError, match=says) as info:
        training.Recipe(**{field: value})
    assert one_sentence(str(info.value)), str(info.value)


def test_the_command_refuses_zero_epochs_in_one_sentence(tmp_path, capsys):
    from training.__main__ import main

    assert main(["scratch", "--dataset", "digits", "--epochs", "0", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "at least 1 epoch" in error and not (tmp_path / "out" / "model.safetensors").exists()


def _stored_zip(path: Path, entries: dict) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, payload in entries.items():
            z.writestr(name, payload)
    return path


def _patch_central_directory(path: Path, offset: int, value: bytes) -> Path:
    """Overwrite bytes of the first central-directory entry (the record signed PK\\1\\2)."""
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02") + offset
    raw[at:at + len(value)] = value
    path.write_bytes(bytes(raw))
    return path


def _crc_error(tmp_path):
    path = _stored_zip(tmp_path / "crc.zip", {"a/x.png": b"0123456789" * 10})
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"0123456789")] ^= 0xFF  # the data changed, the CRC not
    path.write_bytes(bytes(raw))
    return path


def _encrypted(tmp_path):  # general-purpose flag bit 0: encrypted
    return _patch_central_directory(_stored_zip(tmp_path / "enc.zip", {"a/x.png": b"x" * 100}), 8, b"\x01\x00")


def _unsupported(tmp_path):  # compression method 99 (AES), which zipfile cannot read
    return _patch_central_directory(_stored_zip(tmp_path / "aes.zip", {"a/x.png": b"x" * 100}), 10, b"\x63\x00")


@pytest.mark.parametrize("make, says", [
    (_crc_error, "is damaged"),
    (_encrypted, "is encrypted"),
    (_unsupported, "compressed in a way"),
    (lambda tmp_path: _zip(tmp_path / "clash.zip", {"a": b"x", "a/b": b"y"}), "clashes with"),
    (lambda tmp_path: _zip(tmp_path / "clash2.zip", {"a/b": b"y", "a": b"x"}), "clashes with"),
    (lambda tmp_path: _zip(tmp_path / "long.zip", {f"a/{'x' * 300}.png": b"x"}), "cannot be unpacked here"),
])
def test_a_zip_that_cannot_be_unpacked_is_one_sentence(tmp_path, make, says):
    from training.data import safe_extract_zip

    with pytest.raises(training.TrainingInputError, match=says) as info:
        safe_extract_zip(make(tmp_path), tmp_path / "out")
    assert one_sentence(str(info.value)), str(info.value)
    assert info.value.__cause__ is None  # no traceback chained behind the sentence
