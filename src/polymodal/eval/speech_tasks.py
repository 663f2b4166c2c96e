"""Speech-recognition evaluation on the spoken world's held-out voices: WER and CER."""

from __future__ import annotations

from typing import Any

from polymodal.eval.asr import char_error_rate, word_error_rate

QUESTION_SHARE = 0.5  # half word lists ("seven red stop"), half spoken questions ("how many stars are there")


def spoken_asr(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """Transcribe ``n`` test utterances (voices never trained on) and score them against the transcripts.

    ``wer``/``cer`` are corpus-level (total edits / total reference words or characters), after the usual
    normalisation (lowercase, no punctuation, digits spelled out); ``_words`` and ``_questions`` split them
    by utterance kind.
    """
    from polymodal.data.worlds.spoken import SpokenConfig, SpokenWorld

    count = n or 300
    rate = pipeline.audio_processor.config.sample_rate
    world = SpokenWorld(SpokenConfig(seed=seed, sample_rate=rate, question_share=QUESTION_SHARE))
    samples = world.samples(range(count), "test")
    hypotheses = pipeline.transcribe([s.waveform for s in samples], sample_rate=rate)
    refs = [s.text for s in samples]
    metrics = _rates(refs, hypotheses)
    questions = [world.is_question(i, "test") for i in range(count)]
    for name, keep in (("_questions", True), ("_words", False)):
        picked = [k for k, q in enumerate(questions) if q == keep]
        if picked:
            part = _rates([refs[k] for k in picked], [hypotheses[k] for k in picked])
            metrics |= {f"{key}{name}": value for key, value in part.items()}
    examples = list(zip(refs, hypotheses, strict=True))[:5]
    return count, metrics | {"examples": [{"reference": r, "hypothesis": h} for r, h in examples]}


def _rates(refs: list[str], hypotheses: list[str]) -> dict[str, float]:
    exact = sum(h.strip() == r for h, r in zip(hypotheses, refs, strict=True)) / len(refs)
    return {
        "wer": word_error_rate(refs, hypotheses),
        "cer": char_error_rate(refs, hypotheses),
        "sentence_accuracy": exact,
    }
