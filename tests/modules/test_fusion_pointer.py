"""The pointer readout: grid coordinates, shapes, padding, and that it learns to point at a named object."""

import pytest
import torch
import torch.nn.functional as F

from polymodal.modules.fusion_pointer import PointerReadout, grid_coordinates


def test_grid_coordinates_are_row_major_cell_centres():
    coords = grid_coordinates(4)
    torch.testing.assert_close(coords, torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]))
    with pytest.raises(ValueError, match="square grid"):
        grid_coordinates(6)


def test_points_features_and_padding():
    torch.manual_seed(0)
    pointer = PointerReadout(8, 16)
    text, image = torch.randn(3, 5, 8), torch.randn(3, 16, 8)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    points = pointer(text, mask, image)
    assert points.shape == (3, 2, 2) and bool(((points >= 0) & (points <= 1)).all())
    assert pointer.features(points).shape == (3, pointer.feature_dim) == (3, 6)
    changed = text.clone()
    changed[1, 3:] = 100.0  # padding must not move the points
    torch.testing.assert_close(pointer(changed, mask, image)[1], points[1])
    with pytest.raises(ValueError, match="expected 16 image tokens"):
        pointer(text, mask, image[:, :9])


def test_it_learns_to_point_at_the_object_a_word_names():
    """Image tokens hold one of four "colours" at random cells; the question names one colour."""
    torch.manual_seed(0)
    colours = torch.nn.Embedding(5, 16)  # 0 = background
    words = torch.nn.Embedding(4, 16)
    pointer = PointerReadout(16, 16, slots=1)
    parameters = [*colours.parameters(), *words.parameters(), *pointer.parameters()]
    optimiser = torch.optim.Adam(parameters, lr=3e-2)
    coords = grid_coordinates(16)
    g = torch.Generator().manual_seed(0)

    def sample(n):
        grid = torch.zeros(n, 16, dtype=torch.long)
        cells = torch.stack([torch.randperm(16, generator=g)[:4] for _ in range(n)])
        grid.scatter_(1, cells, torch.arange(1, 5).expand(n, 4))
        asked = torch.randint(0, 4, (n,), generator=g)
        return grid, asked, coords[cells[torch.arange(n), asked]]

    for _ in range(150):
        grid, asked, target = sample(64)
        points = pointer(words(asked)[:, None], None, colours(grid))
        loss = F.l1_loss(points[:, 0], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    grid, asked, target = sample(256)
    with torch.no_grad():
        error = (pointer(words(asked)[:, None], None, colours(grid))[:, 0] - target).abs().mean()
    assert error < 0.05  # a quarter of a cell; pointing at random would be about 0.33
