import pytest
import torch

from polymodal.data.collate import pad_token_ids, stack_images, truncate_ids


def test_pad_token_ids_pads_to_longest_and_masks_padding():
    ids, mask = pad_token_ids([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    with pytest.raises(ValueError, match="truncate"):
        pad_token_ids([[1, 2, 3]], pad_id=0, max_length=2)


def test_truncate_keeps_end_token_when_asked():
    assert truncate_ids([1, 2, 3, 4, 9], 3, keep_last=True) == [1, 2, 9]
    assert truncate_ids([1, 2, 3, 4, 9], 3, keep_last=False) == [1, 2, 3]
    assert truncate_ids([1, 2], 3, keep_last=True) == [1, 2]


def test_stack_images_checks_shapes():
    assert stack_images([torch.zeros(3, 4, 4)] * 2).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="different shapes"):
        stack_images([torch.zeros(3, 4, 4), torch.zeros(3, 5, 5)])


def test_left_padding_aligns_the_last_tokens():
    from polymodal.data.collate import pad_token_ids

    ids, mask = pad_token_ids([[5, 6, 7], [8]], pad_id=0, left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[True, True, True], [False, False, True]]
