"""Shared fixtures: small, seeded random models (pretrained weights cannot be downloaded here)."""
import pytest
import torch
import torchvision


def randomize_biases(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give every bias a non-zero random value (torchvision initializes them to zero), so that tests
    exercise the bias terms of the rules."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=g, dtype=module.bias.dtype))
    return model


def vgg16_without_biases() -> torch.nn.Module:
    """A random VGG-16 (seed 3) in float64 with every bias zero: without biases the conserving rules
    must keep the relevance sum exactly, layer by layer."""
    torch.manual_seed(3)
    model = torchvision.models.vgg16().double().eval()
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    return model


def assert_conserved(explanation) -> None:
    """Every layer's relevance sum equals the explained logit (float64 rounding)."""
    logits = explanation.logits.gather(1, explanation.target[:, None])[:, 0]
    assert torch.allclose(explanation.layer_sums, logits.expand_as(explanation.layer_sums), rtol=1e-9, atol=0)


@pytest.fixture(scope="session")
def vgg16_f64():
    """A random VGG-16 in float64 with non-zero random biases, in eval mode."""
    torch.manual_seed(0)
    return randomize_biases(torchvision.models.vgg16()).double().eval()


@pytest.fixture(scope="session")
def images_f64():
    """Two different random 'normalized images', float64, [2, 3, 224, 224]."""
    g = torch.Generator().manual_seed(2)
    return torch.randn(2, 3, 224, 224, generator=g, dtype=torch.float64)


@pytest.fixture(scope="session")
def sample_image():
    """A function: image name ('castle', the thesis's castle.jpg, or an ImageNet sample's class name,
    e.g. 'common newt') → its float32 image ``[1, 3, 224, 224]`` from the data mirror (sha256-checked)."""
    import os
    from lrpkit import data
    if not os.environ.get(data.MIRROR_ENV):
        pytest.skip(f"no image mirror ({data.MIRROR_ENV} unset)")
    records = {r.class_name: r for r in data.image_set("imagenet-samples")}
    records["castle"] = data.image_set("castle")[0]
    cache = {}

    def load(name):
        if name not in cache:
            cache[name] = data.load_image(records[name].path)
        return cache[name].clone()
    return load
