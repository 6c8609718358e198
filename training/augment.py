"""Light and weather augmentation: training photos that look taken in haze, low light or rain.

SF-XL's training images are daytime Street View; queries from other sources (the paper's
Flickr photos, the synthetic city's queries_v1) are often foggy, dark or soft. These
transforms change a clear-day crop in image space, after it became a tensor in [0, 1] and
before normalisation, so they cost little at training resolution:

- haze: blend towards a grey-blue veil, stronger towards the top of the photo, where the
  far facades and the sky are (a scene's depth is unknown here, the height is a proxy);
- low light: darken with a gamma curve, tint warm (street lamps, dusk) and add sensor noise;
- overcast/rain: flatten contrast towards a cool grey and add noise.

They draw from torch's generator, which training seeds per epoch and per loader worker.
"""

from __future__ import annotations

import torch

WEATHER_KINDS = ("haze", "low_light", "overcast")


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def haze(image: torch.Tensor) -> torch.Tensor:
    """Blend towards a light grey veil; the blend weight grows from the bottom row to the top."""
    grey = _uniform(0.6, 0.85)
    veil = torch.tensor([grey - 0.02, grey, grey + 0.03]).view(3, 1, 1)
    bottom, top = _uniform(0.25, 0.7), _uniform(0.6, 1.0)
    rows = torch.linspace(top, bottom, image.shape[-2]).view(1, -1, 1)
    return image * (1 - rows) + veil * rows


def low_light(image: torch.Tensor) -> torch.Tensor:
    """Dusk to night: a darker, warmer, noisier photo."""
    gain = _uniform(0.08, 0.5)
    gamma = _uniform(1.0, 1.8)
    warm = torch.tensor([_uniform(1.0, 1.25), 1.0, _uniform(0.7, 0.95)]).view(3, 1, 1)
    dark = image.clamp(0, 1).pow(gamma) * gain * warm
    return dark + torch.randn_like(image) * _uniform(0.0, 0.04)


def overcast(image: torch.Tensor) -> torch.Tensor:
    """Flat, cool light: contrast pulled towards a grey level, a little noise."""
    flat = _uniform(0.4, 0.8)
    grey = torch.tensor([0.55, 0.57, 0.62]).view(3, 1, 1) * _uniform(0.8, 1.1)
    return image * flat + grey * (1 - flat) + torch.randn_like(image) * _uniform(0.0, 0.02)


EFFECTS = {"haze": haze, "low_light": low_light, "overcast": overcast}


class RandomWeather(torch.nn.Module):
    """With probability p, one of the effects above, chosen uniformly; output in [0, 1]."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return image
        kind = WEATHER_KINDS[int(torch.randint(len(WEATHER_KINDS), ()))]
        return EFFECTS[kind](image).clamp(0, 1)

    def extra_repr(self) -> str:
        return f"p={self.p}"
