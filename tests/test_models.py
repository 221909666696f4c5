"""lrpkit.models: weights "imagenet" (through a temporary torch hub cache), file, "random", "auto"."""
from __future__ import annotations

import hashlib
import urllib.error
import warnings

import pytest
import torch
import torchvision

from lrpkit import imagenet, models
from test_data import MIRROR, needs_mirror


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache: TORCH_HOME points into tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("LRPKIT_OFFLINE", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def constant_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """A state dict for ``arch`` whose k-th tensor is the constant k / 1000. Stored as stride-0
    views of one number each, so the file is a few kilobytes instead of half a gigabyte."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in getattr(torchvision.models, arch)().state_dict().items()}
    return {k: torch.full((1,), k_index / 1000.0).expand(shape)
            for k_index, (k, shape) in enumerate(shapes.items())}


def assert_holds_constants(model: torch.nn.Module) -> None:
    for k_index, (name, tensor) in enumerate(model.state_dict().items()):
        assert torch.all(tensor == torch.tensor(k_index / 1000.0)), name


def test_imagenet_weights_load_from_the_torch_hub_cache(hub):
    file = models.pretrained_file("vgg16")
    assert file == hub / "vgg16-397923af.pth"          # TORCH_HOME honoured, torchvision's name
    hub.mkdir(parents=True)
    torch.save(constant_state_dict("vgg16"), file)
    with pytest.warns(models.UnverifiedWeightsWarning, match="expected prefix 397923af"):
        model = models.vgg16(weights="imagenet", allow_unverified=True)
    assert_holds_constants(model)
    assert not model.training
    info = models.weights_info(model)
    assert (info.source, info.arch, info.path) == ("imagenet", "vgg16", str(file))
    assert info.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert info.verified is False and info.pretrained is False   # not torchvision's real file
    assert "UNVERIFIED" in info.banner()
    # "auto" takes the same cached file (no download attempted: LRPKIT_OFFLINE is honoured too)
    with pytest.warns(models.UnverifiedWeightsWarning):
        auto = models.vgg("vgg16", "auto", download=False, allow_unverified=True)
    assert models.weights_info(auto).source == "imagenet"
    assert models.weights_info(auto).requested == "auto"


def test_unverified_imagenet_weights_are_refused_unless_allowed(hub):
    """A cached file without torchvision's published sha256 is refused by "imagenet" and "auto";
    allowed, it is shown as loudly as random weights: warning, banner, book banner."""
    from lrpkit import book

    hub.mkdir(parents=True)
    torch.save(constant_state_dict("vgg16"), hub / "vgg16-397923af.pth")
    digest = hashlib.sha256((hub / "vgg16-397923af.pth").read_bytes()).hexdigest()
    for weights in ("imagenet", "auto"):
        with pytest.raises(ValueError, match=r"vgg16 weights in .*vgg16-397923af.pth do not have the sha256 "
                                             r"torchvision publishes \(expected prefix 397923af, got "
                                             + digest[:8] + r"\).*delete the file.*allow_unverified=True"):
            models.vgg16(weights=weights)
    with pytest.warns(models.UnverifiedWeightsWarning, match="^UNVERIFIED WEIGHTS - .*may not be the pretrained"):
        model = models.vgg16(weights="imagenet", allow_unverified=True)
    info = models.weights_info(model)
    assert info.warning.startswith("UNVERIFIED WEIGHTS - ")
    assert info.banner().startswith(f"vgg16 with UNVERIFIED weights ({hub / 'vgg16-397923af.pth'}: sha256 "
                                    f"{digest} does not start with torchvision's published prefix 397923af)")
    page = book.provenance({"device": "cpu", "weights": "imagenet", "profile": "fast", "seed": 0}, model)
    banner = page.banner()
    assert repr(banner) == "Unverified weights"
    assert banner._repr_html_().startswith('<div class="admonition warning lrpkit-unverified-weights">')


def test_class_index_reads_full_wordnet_names():
    assert imagenet.class_index("tank, army tank") == 847
    assert imagenet.class_index("tank, army tank, armored combat vehicle, armoured combat vehicle") == 847
    assert imagenet.class_index("Army_Tank") == 847 == imagenet.class_index("tank")
    assert imagenet.class_index("maillot, tank suit") == 639        # torchvision: "maillot tank suit"
    assert imagenet.class_index("maillot") == 638
    assert imagenet.class_index("Cardigan, Cardigan Welsh corgi") == 264
    assert imagenet.class_index("cardigan, Cardigan Welsh corgi") == 264   # only 264 has both names
    assert imagenet.class_index("cardigan") == 474
    with pytest.raises(ValueError, match=r"class name 'panther' is ambiguous: 286 \('cougar'\), 290 \('jaguar'\)"):
        imagenet.class_index("panther")
    with pytest.raises(ValueError, match="unknown ImageNet class name 'tank, tank suit'"):
        imagenet.class_index("tank, tank suit")                      # two classes' names


def test_wordnet_names_agree_with_torchvisions_classes():
    """The shipped synonyms are in torchvision's class order: its name is the first synonym of
    every class but the two it renames to tell apart the duplicates "crane" and "maillot"."""
    lemmas, names = imagenet.lemmas(), imagenet.categories()
    assert len(lemmas) == 1000
    differ = {i: (names[i], lemmas[i]) for i in range(1000) if names[i] != lemmas[i][0]}
    assert differ == {134: ("crane bird", ("crane",)), 639: ("maillot tank suit", ("maillot", "tank suit"))}


@needs_mirror
def test_wordnet_names_are_of_the_mirrors_wnids():
    import csv

    with open(imagenet.LEMMAS_FILE, newline="") as handle:
        shipped = [(int(r["index"]), r["wnid"]) for r in csv.DictReader(handle, delimiter="\t")]
    with open(MIRROR / "imagenet_classes.tsv", newline="") as handle:
        mirror = [(int(r["index"]), r["wnid"]) for r in csv.DictReader(handle, delimiter="\t")]
    assert shipped == mirror


def test_imagenet_offline_error_names_folder_and_file(hub, monkeypatch):
    monkeypatch.setenv("LRPKIT_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as caught:
        models.vgg16(weights="imagenet")
    message = str(caught.value)
    assert "vgg16-397923af.pth" in message and str(hub) in message and "\n" not in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message


def test_imagenet_failed_download_error_names_folder_and_file(hub, monkeypatch):
    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(FileNotFoundError, match=r"cannot download .*Name or service not known.*"
                                                r"place vgg11-8a719046\.pth .* in " + str(hub)):
        models.vgg11(weights="imagenet")
    assert not list(hub.glob("*"))


def test_auto_falls_back_to_random_loudly(hub, monkeypatch):
    monkeypatch.setenv("LRPKIT_OFFLINE", "yes")
    with pytest.warns(models.RandomWeightsWarning, match="PRETRAINED WEIGHTS UNAVAILABLE.*"
                                                         "RANDOM vgg11 weights .seed 3.*vgg11-8a719046.pth"):
        model = models.vgg11(weights="auto", seed=3)
    info = models.weights_info(model)
    assert (info.source, info.requested, info.pretrained, info.seed) == ("random", "auto", False, 3)
    assert "RANDOM" in info.warning and "RANDOM weights" in info.banner()
    # the fallback is exactly the seeded random model, drawn without touching the global RNG
    state = torch.random.get_rng_state()
    torch.manual_seed(3)
    reference = torchvision.models.vgg11()
    torch.random.set_rng_state(state)
    for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_random_weights_are_seeded_and_leave_global_rng_alone():
    before = torch.random.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # "random" asked for: no warning
        a = models.vgg11(weights="random", seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = models.vgg11(weights="random", seed=1)
    first_a, first_b = a.features[0].weight, b.features[0].weight
    assert not torch.equal(first_a, first_b)     # equality with torchvision's seeded init: above
    assert models.weights_info(a) == models.WeightsInfo(
        arch="vgg11", source="random", pretrained=False, requested="random", seed=0)


def test_weights_from_a_state_dict_file(tmp_path):
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": constant_state_dict("vgg13")}, path)     # a checkpoint wrapper
    model = models.vgg13(weights=path)
    assert_holds_constants(model)
    info = models.weights_info(model)
    assert (info.source, info.path) == ("file", str(path))
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_bad_weights_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found: .*imagnet.*'imagenet', 'random'"):
        models.vgg16(weights="imagnet")                      # a typo is a missing path
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(ValueError, match="cannot read weights file .*notes.txt"):
        models.vgg16(weights=tmp_path / "notes.txt")
    torch.save(constant_state_dict("vgg11"), tmp_path / "vgg11.pth")
    with pytest.raises(ValueError, match="does not fit vgg16: missing keys"):
        models.vgg16(weights=tmp_path / "vgg11.pth")
    torch.save({"w": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        models.vgg16(weights=tmp_path / "list.pth")
    with pytest.raises(TypeError, match="weights must be"):
        models.vgg16(weights=3)
    with pytest.raises(ValueError, match="unknown architecture 'vgg15'"):
        models.vgg("vgg15", "random")
    with pytest.raises(ValueError, match="IMAGENET1K_FEATURES"):
        models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_FEATURES)
    with pytest.raises(ValueError, match="invalid device"):
        models.vgg16(weights="random", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            models.vgg16(weights="random", device="cuda")


def test_damaged_cached_weights_are_reported(hub):
    hub.mkdir(parents=True)
    (hub / "vgg16-397923af.pth").write_bytes(b"\x80\x02 half a download")
    with pytest.raises(ValueError, match="do not have the sha256 .*delete the file and place vgg16-397923af.pth"):
        models.vgg16(weights="imagenet")
    with pytest.raises(ValueError, match="cannot be used .*delete the file and place vgg16-397923af.pth"):
        models.vgg16(weights="imagenet", allow_unverified=True)


def test_weights_info_of_a_foreign_model():
    with torch.device("meta"):
        model = torchvision.models.vgg11()
    with pytest.raises(TypeError, match="not built by lrpkit.models"):
        models.weights_info(model)


def test_targets_and_class_names():
    assert imagenet.check_target(None) is None
    assert imagenet.check_target(torch.tensor(999)) == 999
    for bad in (1000, -1):
        with pytest.raises(ValueError, match=f"target {bad} out of range.*0 to 999"):
            imagenet.check_target(bad)
    with pytest.raises(TypeError, match="class index"):
        imagenet.check_target(2.5)
    assert imagenet.class_name(29) == "axolotl" and imagenet.class_index("castle") == 483
    assert imagenet.class_index("970") == 970
    with pytest.raises(ValueError, match="out of range"):
        imagenet.class_index("1000")
    with pytest.raises(ValueError, match="unknown ImageNet class name 'castel'.*castle"):
        imagenet.class_index("castel")
    assert len(imagenet.categories()) == imagenet.NUM_CLASSES
