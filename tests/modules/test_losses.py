import torch
import torch.nn.functional as F

from polymodal.modules.losses import infonce_loss, siglip_loss


def features(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        F.normalize(torch.randn(n, d, generator=g), dim=-1),
        F.normalize(torch.randn(n, d, generator=g), dim=-1),
    )


def test_infonce_equals_clip_cross_entropy_without_groups():
    img, txt = features()
    scale = torch.tensor(10.0)
    logits = scale * img @ txt.t()
    labels = torch.arange(6)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    torch.testing.assert_close(infonce_loss(img, txt, scale), expected)


def test_infonce_groups_do_not_push_same_class_pairs_apart():
    eye = torch.eye(8)
    txt = eye[[0, 1, 2, 3]]  # captions 0 and 1 are two phrasings of one class ...
    both = F.normalize(eye[0] + eye[1], dim=0)
    groups = torch.tensor([0, 0, 1, 2])
    scale = torch.tensor(50.0)
    grads = []
    for g in (groups, None):
        img = torch.stack([both, both, eye[2], eye[3]]).requires_grad_(
            True
        )  # ... images equally close to both
        infonce_loss(img, txt, scale, g).backward()
        grads.append(img.grad[:2].abs().max())
    assert grads[0] < 1e-6  # with groups the perfect solution is a minimum
    assert grads[1] > 1e-2  # one-hot targets would push the two images apart


def test_infonce_hard_negatives_raise_loss_and_can_be_masked():
    img, txt = features()
    scale = torch.tensor(10.0)
    base = infonce_loss(img, txt, scale)
    hard = infonce_loss(img, txt, scale, negative_text_features=img.clone())
    assert hard > base
    masked = infonce_loss(
        img, txt, scale, negative_text_features=img.clone(), negative_valid=torch.zeros(6, dtype=torch.bool)
    )
    torch.testing.assert_close(masked, base)


def test_siglip_matches_pairwise_definition():
    img, txt = features(4)
    scale, bias = torch.tensor(10.0), torch.tensor(-3.0)
    logits = scale * img @ txt.t() + bias
    labels = 2 * torch.eye(4) - 1
    expected = -sum(F.logsigmoid(labels[i, j] * logits[i, j]) for i in range(4) for j in range(4)) / 4
    torch.testing.assert_close(siglip_loss(img, txt, scale, bias), expected)


def test_losses_have_gradients():
    img, txt = features()
    img.requires_grad_(True)
    infonce_loss(img, txt, torch.tensor(5.0)).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_multi_column_group_keys_match_on_any_column():
    from polymodal.modules.losses import positive_mask

    keys = torch.tensor([[1, 10], [1, 11], [2, 11], [3, 12]])  # 0~1 by group, 1~2 by text
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(positive_mask(4, keys, torch.device("cpu")), expected)
