"""Instruction data for the assistant, derived from the shapes world's scene graphs.

Kinds: short and detailed captions, VQA, referring expressions answered with a box written as text
(``[x0,y0,x1,y1]``, normalised, two decimals) and multi-turn conversations mixing them. Objects are listed
left to right so a caption is a function of the scene. Every answer is exact with respect to the scene
graph, so a model that learns the data does not learn to hallucinate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from polymodal.config import ConfigError
from polymodal.data.chat import IMAGE_TOKEN, with_media
from polymodal.data.worlds.shapes import DEFAULT_HELDOUT, Scene, ShapesWorld, questions, referring_expressions
from polymodal.data.worlds.shapes_language import RELATION_WORDS, noun_phrase, object_list, relation_facts
from polymodal.data.worlds.shapes_qa import (
    QA,
    QA_KINDS,
    RATIONALE_JOIN,
    TRAINING_ONLY_QUESTIONS,
    format_box,
    reasoned_answer,
)
from polymodal.data.worlds.shapes_scene import NUMBER_WORDS

SHORT_PROMPTS = ("describe the image briefly.", "what is in the image?", "give a short caption.")
DETAILED_PROMPTS = ("describe the image in detail.", "give a detailed description of the image.")
GROUND_PROMPTS = ("where is {}?", "give the bounding box of {}.")
# existence questions are asked both ways: "is there a red circle?" and POPE's "... in the image?"
EXISTS_SUFFIXES = ("", " in the image")
INSTRUCTION_KINDS = ("caption_short", "caption_detailed", "vqa", "grounding", "conversation")
# InstructionDataConfig's ways to give spatial answers a rationale (at most one is set) -> the form written
SPATIAL_RATIONALE_FORMS = {
    "spatial_rationale": "names",
    "spatial_box_rationale": "boxes",
    "spatial_attribute_rationale": "attribute",
}
MULTI_QUESTION_KINDS = ("vqa", "grounding")  # kinds that may ask several questions about one image


def left_to_right(scene: Scene):
    """The scene's objects ordered by centre x (then y): a caption's canonical order."""
    return sorted(scene.objects, key=lambda o: (o.cx, o.cy))


def short_caption(scene: Scene) -> str:
    """'a red circle, a blue square and a green star' (left to right)."""
    return object_list(left_to_right(scene), with_size=False)


def detailed_caption(scene: Scene, max_relations: int = 2) -> str:
    """Count, objects with sizes (left to right) and up to ``max_relations`` clear spatial relations."""
    n = len(scene)
    noun = "shape" if n == 1 else "shapes"
    text = f"{NUMBER_WORDS[n]} {noun}: {object_list(left_to_right(scene), with_size=True)}."
    relations = [
        f"{noun_phrase(a[1], a[2], a[0], definite=True)} is {RELATION_WORDS[rel]} "
        f"{noun_phrase(b[1], b[2], b[0], definite=True)}"
        for a, rel, b in relation_facts(scene)[:max_relations]
    ]
    if relations:
        text += " " + ". ".join(relations) + "."
    return text


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _turn(prompt: str, answer: str, with_image: bool, image_after: bool = False) -> list[dict[str, str]]:
    content = with_media(prompt, image_after) if with_image else prompt
    return [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]


def _phrased(qa: QA, phrasing: np.random.Generator | None) -> str:
    """The question of ``qa``; an existence question gets one of ``EXISTS_SUFFIXES`` drawn by ``phrasing``
    (a generator of its own, so the other draws stay as they were; None: the question as written)."""
    if qa.kind != "exists" or phrasing is None:
        return qa.question
    return qa.question.removesuffix("?") + _pick(phrasing, EXISTS_SUFFIXES) + "?"


class QuestionMix:
    """Draws a VQA question by kind: a kind by weight among those the scene has questions of, then one of
    its questions uniformly (the default draw, uniform over all of a scene's questions, is what the eval
    asks; weights move training towards the hard kinds). The training-only kinds (``side``, ``compare``:
    ``shapes_qa.TRAINING_ONLY_QUESTIONS``) join the pool when they have a weight."""

    def __init__(self, weights: dict[str, float]):
        self.weights = {k: w for k, w in weights.items() if w > 0}

    def draw(self, scene: Scene, rng: np.random.Generator) -> QA:
        pool = questions(scene, rng)
        for kind, extra in TRAINING_ONLY_QUESTIONS.items():
            pool += extra(scene) if kind in self.weights else []
        by_kind: dict[str, list[QA]] = {}
        for qa in pool:
            by_kind.setdefault(qa.kind, []).append(qa)
        kinds = [k for k in by_kind if k in self.weights]
        if not kinds:  # the scene has no question of a weighted kind: any of its questions
            return _pick(rng, pool)
        kind = KindMix(self.weights, tuple(kinds)).draw(rng)
        return _pick(rng, by_kind[kind])


@dataclass(frozen=True)
class Asking:
    """How a sample's questions are asked and answered."""

    phrasing: np.random.Generator | None = None  # varies the wording of existence questions (``_phrased``)
    question_mix: QuestionMix | None = None  # draws VQA questions by kind (None: uniformly over the scene's)
    spatial_form: str | None = None  # spatial answers say what decides them first, in this form of
    # shapes_qa.SPATIAL_FORMS (reasoned_answer); None: the bare answer
    color_boxes: bool = False  # colour answers give the object's box first: "[0.41,0.10,0.62,0.33], so red"
    shape_boxes: bool = False  # shape answers give the object's box first: "[0.41,0.10,0.62,0.33], so star"


def _single(scene: Scene, kind: str, rng: np.random.Generator, asking: Asking = Asking()) -> tuple[str, str]:
    """(prompt, answer) of one instruction of ``kind``, its questions asked as ``asking`` says."""
    if kind == "caption_short":
        return _pick(rng, SHORT_PROMPTS), short_caption(scene)
    if kind == "caption_detailed":
        return _pick(rng, DETAILED_PROMPTS), detailed_caption(scene)
    if kind == "vqa":
        mix = asking.question_mix
        qa = mix.draw(scene, rng) if mix else _pick(rng, questions(scene, rng))
        return _phrased(qa, asking.phrasing), _vqa_answer(scene, qa, asking)
    if kind == "grounding":
        expressions = referring_expressions(scene)
        if not expressions:  # no object can be singled out (e.g. two alike, side by side): caption it
            return _single(scene, "caption_short", rng)
        expression, box = _pick(rng, expressions)
        return _pick(rng, GROUND_PROMPTS).format(expression), format_box(box)
    raise ValueError(f"unknown instruction kind {kind!r}; expected one of {INSTRUCTION_KINDS}")


def _vqa_answer(scene: Scene, qa: QA, asking: Asking) -> str:
    """The answer to ``qa`` as ``asking`` says: with its rationale first, or a colour or shape after the box
    of the object asked about (located first, as grounding does; its attribute is then read at that place)."""
    if (asking.color_boxes and qa.kind == "color") or (asking.shape_boxes and qa.kind == "shape"):
        (obj,) = [o for o in scene.objects if (o.cx, o.cy) == qa.points[0]]
        return f"{format_box(obj.bbox)}{RATIONALE_JOIN}{qa.answer}"
    if asking.spatial_form:
        return reasoned_answer(qa, asking.spatial_form)
    return qa.answer


def _distinct(
    scene: Scene, kind: str, rng: np.random.Generator, count: int, asking: Asking
) -> list[tuple[str, str]]:
    """Up to ``count`` (prompt, answer) pairs of ``kind`` about ``scene``, no two asking the same thing (a
    repeated question would teach copying the earlier answer); fewer when the scene runs out of them.
    ``count`` 1 draws exactly what ``_single`` draws."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for _ in range(4 * count):
        prompt, answer = _single(scene, kind, rng, asking)
        key = answer if kind == "grounding" else prompt  # a box is one object, however it is asked for
        if key not in seen:
            seen.add(key)
            pairs.append((prompt, answer))
        if len(pairs) == count:
            break
    return pairs


def conversation(
    scene: Scene,
    kind: str,
    rng: np.random.Generator,
    turns: int = 3,
    questions_per_image: int = 1,
    image_after: bool = False,
    asking: Asking = Asking(),
) -> list[dict[str, str]]:
    """One training conversation about ``scene``; the image comes with the first user message, before its
    text or (``image_after``) after it. A vqa or grounding sample asks ``questions_per_image`` different
    questions, one per turn; ``asking``: how the questions are worded, drawn and answered."""
    if kind != "conversation":
        count = questions_per_image if kind in MULTI_QUESTION_KINDS else 1
        pairs = _distinct(scene, kind, rng, count, asking)
        return [m for t, pair in enumerate(pairs) for m in _turn(*pair, t == 0, image_after)]
    messages: list[dict[str, str]] = []
    for t in range(turns):
        sub = _pick(rng, ("caption_short", "vqa", "vqa", "grounding"))
        messages += _turn(*_single(scene, sub, rng, asking), t == 0, image_after)
    return messages


class KindMix:
    """Draws an instruction kind with the mix's weights (kinds with weight 0 never come up)."""

    def __init__(self, mix: dict[str, float], order: tuple[str, ...]):
        self.kinds = [k for k in order if mix.get(k, 0) > 0]
        weights = np.array([mix[k] for k in self.kinds], dtype=np.float64)
        self.cumulative = np.cumsum(weights / weights.sum())

    def draw(self, rng: np.random.Generator) -> str:
        return self.kinds[min(int(np.searchsorted(self.cumulative, rng.random())), len(self.kinds) - 1)]


@dataclass
class InstructionDataConfig:
    mix: dict[str, float] = field(
        default_factory=lambda: {
            "caption_short": 0.15,
            "caption_detailed": 0.15,
            "vqa": 0.4,
            "grounding": 0.2,
            "conversation": 0.1,
        }
    )  # instruction kind -> sampling weight
    image_size: int = 64  # rendered image size in pixels
    min_objects: int = 1  # objects per scene, lower bound
    max_objects: int = 4  # objects per scene, upper bound
    seed: int = 0  # world seed (scene i of the train split is fixed by it)
    questions_per_image: int = 1  # vqa and grounding samples: different questions about the image, one
    # per turn (the image costs most of a sample's tokens, so more answers per image is cheaper signal)
    image_after_question: float = 0.0  # probability that the first user message reads "question <image>"
    # instead of "<image> question" (LLaVA's data mixes both; match the model's image_position)
    vqa_kinds: dict[str, float] | None = None  # question kind -> weight for VQA turns (QA_KINDS and the
    # training-only "side" and "compare"); None: uniform over a scene's questions, as the eval asks
    spatial_rationale: bool = False  # answer spatial questions with what decides them first: "of the blue
    # star and the red circle, the red circle is further left, so no" (only which of the two is further left
    # or higher comes from the image; the name order and yes/no follow from the text: shapes_qa._spatial_qa)
    color_box_rationale: bool = False  # answer colour questions with the object's box first
    # ("[0.41,0.10,0.62,0.33], so red"): find the object as grounding does, then read the colour there
    shape_box_rationale: bool = False  # answer shape questions with the object's box first, as colour ones
    spatial_box_rationale: bool = False  # answer spatial questions by the two objects' boxes instead of
    # their names: "[0.05,0.40,0.25,0.60] and [0.55,0.10,0.80,0.35], yes if the second is further left: the
    # first is, so no" (an unseen colour/shape pair is found as grounding finds it and never has to be
    # written; the wanted and the seen order are written apart, so yes/no only checks that they agree)
    spatial_attribute_rationale: bool = False  # as spatial_rationale, the deciding object named by the first
    # attribute that tells the two apart: "of the blue star and the red circle, the red one is further left,
    # so no" (one word read from the image: an unseen colour/shape pair is written only where it is copied)
    heldout_pairs_in_text: bool = False  # lm stage only: its text-only conversations use every colour/shape
    # pair, the held-out ones too, as a language model's pre-training text names things no training image
    # shows (no image ever holds a held-out pair: the later stages refuse this option)

    @property
    def spatial_form(self) -> str | None:
        """The form (shapes_qa.SPATIAL_FORMS) of spatial answers' rationale, None for bare answers."""
        return next((form for option, form in SPATIAL_RATIONALE_FORMS.items() if getattr(self, option)), None)

    def validate(self) -> None:
        if self.vqa_kinds is not None:
            _check_weights("vqa_kinds", self.vqa_kinds, (*QA_KINDS, *TRAINING_ONLY_QUESTIONS))
        if not 0.0 <= self.image_after_question <= 1.0:
            raise ConfigError(
                f"InstructionDataConfig.image_after_question must be in [0, 1], got {self.image_after_question}"
            )
        if self.questions_per_image < 1:
            raise ConfigError(
                f"InstructionDataConfig.questions_per_image must be >= 1, got {self.questions_per_image}"
            )
        forms = [option for option in SPATIAL_RATIONALE_FORMS if getattr(self, option)]
        if len(forms) > 1:
            raise ConfigError(
                f"InstructionDataConfig: {' and '.join(forms)} are ways to answer the same questions; set one"
            )
        _check_weights("mix", self.mix, INSTRUCTION_KINDS)


def _check_weights(name: str, weights: dict[str, float], allowed: tuple[str, ...]) -> None:
    """A ConfigError unless ``weights`` maps names in ``allowed`` to non-negative weights, not all zero."""
    if set(weights) - set(allowed) or not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise ConfigError(
            f"InstructionDataConfig.{name} needs non-negative weights over {allowed}, got {weights}"
        )


class InstructionSamples:
    """Sample ``i`` = (image, conversation): a pure function of (config, i), for exact resumes."""

    def __init__(self, config: InstructionDataConfig, split: str = "train"):
        config.validate()
        self.config = config
        self.world = ShapesWorld(
            seed=config.seed,
            split=split,
            min_objects=config.min_objects,
            max_objects=config.max_objects,
            image_size=config.image_size,
            heldout=() if config.heldout_pairs_in_text else DEFAULT_HELDOUT,
        )
        self.mix = KindMix(config.mix, INSTRUCTION_KINDS)
        self.question_mix = QuestionMix(config.vqa_kinds) if config.vqa_kinds is not None else None

    def scene(self, i: int):
        """The scene graph of sample ``i`` (the one ``self(i)`` renders)."""
        return self.world.scene(i)

    def __call__(self, i: int):
        config = self.config
        rng = np.random.default_rng([config.seed, 7, i])
        kind = self.mix.draw(rng)
        scene = self.world.scene(i)
        phrasing = np.random.default_rng([config.seed, 13, i])
        after = config.image_after_question
        # drawn from a generator of its own (and only when asked for), so the other draws stay as they were
        image_after = after > 0 and np.random.default_rng([config.seed, 17, i]).random() < after
        messages = conversation(
            scene,
            kind,
            rng,
            questions_per_image=config.questions_per_image,
            image_after=image_after,
            asking=Asking(
                phrasing,
                self.question_mix,
                spatial_form=config.spatial_form,
                color_boxes=config.color_box_rationale,
                shape_boxes=config.shape_box_rationale,
            ),
        )
        return self.world.render(scene), messages


def world_text_corpus(n: int, seed: int = 0, spatial_form: str | None = None) -> list[str]:
    """About ``n`` texts of the assistant's language: every kind of prompt and answer (no images), for
    training its tokenizer (``spatial_form``: spatial answers with their rationale in that form, as
    ``Asking`` says; the names form's words are also all the words of the attribute form)."""
    world = ShapesWorld(seed=seed, split="train", max_objects=4)
    rng = np.random.default_rng([seed, 11])
    texts: list[str] = []
    i = 0
    while len(texts) < n:
        scene = world.scene(i)
        for kind in INSTRUCTION_KINDS[:-1]:
            for message in conversation(scene, kind, rng, asking=Asking(spatial_form=spatial_form)):
                texts.append(message["content"].replace(IMAGE_TOKEN, "").strip())
        i += 1
    return texts[:n]
