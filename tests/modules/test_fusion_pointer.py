"""The pointer and relation readouts: grid coordinates, shapes, padding, exact products, and learning."""

import pytest
import torch
import torch.nn.functional as F

from polymodal.modules.fusion_pointer import OFFSET_SCALE, PointerReadout, RelationReadout, grid_coordinates


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


def test_relation_features_are_directions_dot_the_offset_and_ignore_padding():
    torch.manual_seed(0)
    relation = RelationReadout(8, directions=3)
    text = torch.randn(2, 4, 8)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    points = torch.tensor([[[0.2, 0.7], [0.6, 0.1]], [[0.9, 0.5], [0.3, 0.5]]])
    features = relation(text, mask, points)
    assert features.shape == (2, 3)
    with torch.no_grad():  # the same product, written out for the second text
        weights = (text[1, :2] @ relation.slot * 8**-0.5).softmax(0)
        directions = relation.directions(weights @ text[1, :2]).view(3, 2)
    torch.testing.assert_close(features[1], directions @ (points[1, 0] - points[1, 1]) * OFFSET_SCALE)
    changed = text.clone()
    changed[1, 2:] = 50.0
    torch.testing.assert_close(relation(changed, mask, points), features)
    with pytest.raises(ValueError, match="two points"):
        relation(text, mask, points[:, :1])
    with pytest.raises(ValueError, match="directions must be >= 1"):
        RelationReadout(8, directions=0)


def test_it_learns_which_way_a_relation_word_points():
    """'is A <word> B?' with four direction words and given points: yes/no from one linear layer on top."""
    torch.manual_seed(0)
    words = torch.nn.Embedding(4, 16)
    relation = RelationReadout(16, directions=4)
    head = torch.nn.Linear(4, 1)
    optimiser = torch.optim.Adam([*words.parameters(), *relation.parameters(), *head.parameters()], lr=1e-2)
    truth = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # left, right, above, below
    g = torch.Generator().manual_seed(0)

    def sample(n):
        word = torch.randint(0, 4, (n,), generator=g)
        points = torch.rand(n, 2, 2, generator=g)
        answer = ((points[:, 0] - points[:, 1]) * truth[word]).sum(-1) > 0
        return words(word)[:, None], points, answer.float()

    for _ in range(200):
        text, points, answer = sample(64)
        loss = F.binary_cross_entropy_with_logits(head(relation(text, None, points)).squeeze(-1), answer)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    text, points, answer = sample(512)
    with torch.no_grad():
        accuracy = ((head(relation(text, None, points)).squeeze(-1) > 0).float() == answer).float().mean()
    assert accuracy > 0.95  # chance is 0.5
