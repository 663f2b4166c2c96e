"""Procedural and bundled data worlds with exact ground truth; ``WORLDS`` maps a name to its class."""

from polymodal.data.worlds.digits import DigitsWorld
from polymodal.data.worlds.shapes import ShapesWorld

WORLDS: dict[str, type] = {"shapes": ShapesWorld, "digits": DigitsWorld}

__all__ = ["WORLDS", "DigitsWorld", "ShapesWorld"]
