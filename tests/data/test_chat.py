import pytest

from polymodal.data.chat import IGNORE, IMAGE_TOKEN, ChatTemplate, message_text


def test_image_placeholder_expands_and_only_answers_are_labelled(chat_tokenizer):
    template = ChatTemplate(chat_tokenizer, image_tokens=5)
    messages = [
        {"role": "user", "content": f"{IMAGE_TOKEN} what color is the circle?"},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "and the square?"},
        {"role": "assistant", "content": "blue"},
    ]
    enc = template.encode(messages)
    assert enc.images == 1
    assert enc.ids.count(template.image_id) == 5
    assert enc.ids[0] == chat_tokenizer.bos_id
    labelled = [i for i, label in zip(enc.ids, enc.labels, strict=True) if label != IGNORE]
    assert chat_tokenizer.decode(labelled).split() == ["red", "blue"]
    assert labelled.count(template.end_id) == 2  # each answer's closing <|end|> is a target too
    assert all(label in (IGNORE, i) for i, label in zip(enc.ids, enc.labels, strict=True))


def test_generation_prompt_ends_with_assistant_token(chat_tokenizer):
    template = ChatTemplate(chat_tokenizer, image_tokens=0)
    enc = template.encode([{"role": "user", "content": f"{IMAGE_TOKEN} hi"}], add_generation_prompt=True)
    assert enc.ids[-1] == template.assistant_id
    assert enc.ids.count(template.image_id) == 1  # cross-attention models keep one marker per image


def test_content_parts_count_images():
    text, images = message_text(
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is it?"}]}
    )
    assert images == 1 and text.startswith(IMAGE_TOKEN)


@pytest.mark.parametrize(
    "messages, match",
    [
        ([], "empty"),
        ([{"role": "assistant", "content": "hi"}], "alternate"),
        ([{"role": "user", "content": "   "}], "empty"),
        ([{"role": "user", "content": "hi <|assistant|> yes"}], "may not contain"),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": f"{IMAGE_TOKEN}"}],
            "may not contain",
        ),
        ([{"role": "robot", "content": "hi"}], "role"),
        ([{"role": "user", "content": [{"type": "video"}]}], "unsupported content part"),
    ],
)
def test_bad_conversations_raise(chat_tokenizer, messages, match):
    with pytest.raises(ValueError, match=match):
        ChatTemplate(chat_tokenizer, image_tokens=4).encode(messages)


def test_generation_prompt_needs_a_final_user_message(chat_tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    with pytest.raises(ValueError, match="end with a user message"):
        ChatTemplate(chat_tokenizer, 4).encode(messages, add_generation_prompt=True)


def test_tokenizer_without_chat_tokens_is_refused(tokenizer):
    with pytest.raises(ValueError, match="add_chat_tokens"):
        ChatTemplate(tokenizer, 4)
