import pytest

from polymodal.atomic import TMP_PREFIX, write_folder_atomic, write_text_atomic


def test_folder_appears_complete_and_replaces_old(tmp_path):
    target = tmp_path / "model"
    write_folder_atomic(target, lambda d: (d / "a.txt").write_text("1"))
    write_folder_atomic(target, lambda d: (d / "b.txt").write_text("2"))
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_failure_leaves_old_folder_and_no_temp(tmp_path):
    target = tmp_path / "model"
    write_folder_atomic(target, lambda d: (d / "a.txt").write_text("1"))

    def broken(d):
        (d / "half.txt").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_folder_atomic(target, broken)
    assert (target / "a.txt").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_guard_can_refuse_and_files_are_not_folders(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "me.jpg").write_text("precious")

    def refuse(target):
        raise FileExistsError(f"{target} is not ours")

    with pytest.raises(FileExistsError, match="not ours"):
        write_folder_atomic(tmp_path / "photos", lambda d: None, guard=refuse)
    assert (tmp_path / "photos" / "me.jpg").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        write_folder_atomic(tmp_path / "file", lambda d: None)


def test_write_text_atomic(tmp_path):
    write_text_atomic(tmp_path / "latest", "step_1\n")
    write_text_atomic(tmp_path / "latest", "step_2\n")
    assert (tmp_path / "latest").read_text() == "step_2\n" and len(list(tmp_path.iterdir())) == 1
