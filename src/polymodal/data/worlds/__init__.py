"""Procedural and bundled data worlds with exact ground truth; ``WORLDS`` maps a name to its class."""

from polymodal.data.worlds.digits import DigitsWorld
from polymodal.data.worlds.shapes import ShapesWorld
from polymodal.data.worlds.spoken import SpokenWorld
from polymodal.data.worlds.tones import TonesWorld

WORLDS: dict[str, type] = {
    "shapes": ShapesWorld,
    "digits": DigitsWorld,
    "tones": TonesWorld,
    "spoken": SpokenWorld,
}

__all__ = ["WORLDS", "DigitsWorld", "ShapesWorld", "SpokenWorld", "TonesWorld"]
