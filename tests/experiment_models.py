"""Small seeded models for the experiment tests (imported by ``model.factory`` in their configs)."""
import torch
from torch import nn

#: VGG-16's layer pattern (13 convolutions, 5 max-pools: the thesis's layer indices 0-30) with few
#: channels, for 32x32 inputs.
CHANNELS = [4, 4, "M", 8, 8, "M", 8, 8, 8, "M", 8, 8, 8, "M", 8, 8, 8, "M"]


def tiny_vgg() -> nn.Sequential:
    """A VGG-16-shaped ``nn.Sequential`` for 32x32 images with 1000 outputs, seeded: indices 0-30 are
    the features, 31 Flatten, 32 Linear, 33 ReLU, 34 Linear (the logits)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        layers, channels = [], 3
        for item in CHANNELS:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
                channels = item
        layers += [nn.Flatten(), nn.Linear(channels, 16), nn.ReLU(), nn.Linear(16, 1000)]
        model = nn.Sequential(*layers)
        with torch.no_grad():  # He initialization keeps the signal alive through 15 layers
            for module in model:
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    module.bias.uniform_(-0.05, 0.05)
        return model.eval()
    finally:
        torch.random.set_rng_state(generator_state)


def tiny_vgg64() -> nn.Sequential:
    """:func:`tiny_vgg` in float64 (comparisons that must not depend on rounding)."""
    return tiny_vgg().double()
