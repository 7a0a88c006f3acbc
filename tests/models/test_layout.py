"""The label-order rule and the two labelled-folder layouts (models.layout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.layout import LayoutError, label_order, read_layout


def test_labels_txt_wins_over_every_other_order() -> None:
    assert label_order(["b", "a", "c"], ["c", "a", "b"]) == ["c", "a", "b"]
    assert label_order(["10", "5", "20"], ["20", "10", "5"]) == ["20", "10", "5"]


def test_numbers_sort_numerically_decimals_and_negatives_too() -> None:
    assert label_order(["10", "20", "40", "5"]) == ["5", "10", "20", "40"]
    assert label_order(["-60", "0", "-15", "2.5"]) == ["-60", "-15", "0", "2.5"]


@pytest.mark.parametrize(
    ("names", "order", "message"),
    [
        (["small", "large", "medium"], None, "'large' is not a number; add labels.txt"),
        (["1", "2", "x"], None, "'x' is not a number"),
        (["1", "01", "2"], None, "the same number twice"),
        (["a", "b"], None, "at least 3 labels"),
        (["a", "b", "c"], ["a", "b"], "label 'c' has images but is not in labels.txt"),
        (["a", "b", "c"], ["a", "b", "c", "d"], "label 'd' of labels.txt has no images"),
        (["a", "b", "c"], ["a", "b", "b", "c"], "names label 'b' twice"),
    ],
)
def test_an_order_that_cannot_be_known_is_refused(names: list[str], order: list[str] | None, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        label_order(names, order)


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # layouts are read from names alone; nothing here decodes an image


def test_labels_csv_layout_with_a_header_and_a_wrapping_folder(tmp_path: Path) -> None:
    root = tmp_path / "upload" / "my-set"  # a zipped folder: the set sits one level down
    for name in ("a.png", "b.png", "sub/c.jpg", "d.png"):
        touch(root / name)
    (root / "labels.csv").write_text("file,label\na.png,10\nb.png,5\nsub/c.jpg,20\nd.png,5\n")
    layout = read_layout(tmp_path / "upload")
    assert layout.root == root and layout.label_names == ["5", "10", "20"]
    assert [p.name for p in layout.files] == ["b.png", "d.png", "a.png", "c.jpg"] and layout.labels == [0, 0, 1, 2]
    assert layout.counts == {"5": 2, "10": 1, "20": 1}


@pytest.mark.parametrize(
    ("row", "message"),
    [("../x.png,1", "not a file inside"), ("/etc/x.png,1", "not a file inside"), ("missing.png,1", "not in the data set"),
     ("a.txt,1", "not a PNG or JPEG"), ("a.png", "expected two columns")],
)  # fmt: skip
def test_labels_csv_rows_that_point_outside_or_nowhere_are_refused(tmp_path: Path, row: str, message: str) -> None:
    for name in ("a.png", "b.png", "c.png", "a.txt"):
        touch(tmp_path / name)
    (tmp_path / "labels.csv").write_text(f"a.png,1\nb.png,2\nc.png,3\n{row}\n")
    with pytest.raises(LayoutError, match=message):
        read_layout(tmp_path)


def test_folder_layout_ignores_hidden_and_archiver_files(tmp_path: Path) -> None:
    for name in ("1/a.png", "2/a.png", "3/a.png", "3/.DS_Store", "__MACOSX/1/._a.png", ".hidden/x.png"):
        touch(tmp_path / name)
    assert read_layout(tmp_path).label_names == ["1", "2", "3"]
