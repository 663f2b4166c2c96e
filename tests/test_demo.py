from polymodal.demo import run_demo


def test_demo_writes_pictures_and_reports(tiny_pipeline, tmp_path):
    out = run_demo(tiny_pipeline, tmp_path / "demo", gallery_size=30)
    assert 0.0 <= out["precision_at_5"] <= 1.0 and 0.0 <= out["classify_accuracy"] <= 1.0
    for name in ("search_results.png", "gallery_overview.png", "index/index.faiss", "gallery/captions.jsonl"):
        assert (tmp_path / "demo" / name).is_file()


def test_demo_with_an_assistant_checks_its_answers(tiny_pipeline, make_assistant, tmp_path):
    out = run_demo(tiny_pipeline, tmp_path / "demo", gallery_size=12, assistant=make_assistant("mlp"))
    assert 0.0 <= out["assistant_accuracy"] <= 1.0
    assert (tmp_path / "demo" / "assistant_results.png").is_file()


def test_audio_demo_with_the_shipped_models(tmp_path):
    import shutil

    from rich.console import Console

    import polymodal
    from polymodal.demo_audio import run_audio_demo

    models = {"clap": polymodal.load("tiny-clap"), "ears": polymodal.load("tiny-audio-assistant")}
    if shutil.which("espeak-ng"):
        models |= {"asr": polymodal.load("tiny-asr"), "assistant": polymodal.load("tiny-assistant")}
    out = run_audio_demo(models, tmp_path, Console(record=True, width=160))
    assert out["sound_classification_accuracy"] >= 0.5
    if "asr" in models:
        assert out["asr_wer"] <= 0.5 and (tmp_path / "voice_answer.wav").is_file()
