"""Data loading: real files, each kind of malformed row, missing files and columns, batching."""

import os
import warnings

import numpy as np
import pytest

from mtl_lab import data
from mtl_lab.data import DataError, DataWarning

HEADER = "\tid\tsentence1\tsentence2\tis_duplicate\n"


def write(folder, name, text):
    (folder / name).write_text(text, encoding="utf-8")
    # the folder must look like a data folder for resolve_data_dir(explicit) -- any folder works
    return folder


def test_real_files_load_with_expected_sizes():
    sizes = {(t, s): len(data.load_split(t, s)) for t in data.TASKS for s in data.SPLITS}
    assert sizes[("sst", "train")] == 8544
    assert sizes[("sst", "test")] == 2210
    assert sizes[("qqp", "train")] == 16225  # 16,226 rows, one malformed
    assert sizes[("sts", "dev")] == 863


def test_shared_quora_files_skip_their_malformed_row_with_one_warning():
    with pytest.warns(DataWarning, match=r"quora-train.csv: skipped 1 malformed row \(empty label: 1"):
        df = data.load_split("qqp", "train")
    assert df.attrs["skipped"] == {"empty label": 1}
    assert set(df["label"].unique()) == {0, 1}
    assert not df["sentence2"].str.contains("\t").any()


@pytest.mark.parametrize(
    "row, reason",
    [
        ("1\tb\tWhat is up?\t\t1.0\n", "empty sentence"),
        ("1\tb\tWhat is up?\tHow are you?\t\n", "empty label"),
        ("1\tb\tWhat is up?\tHow are you?\t2.0\n", "invalid or out-of-range label"),
        ("1\tb\tWhat is up?\tHow are you?\tyes\n", "invalid or out-of-range label"),
        ("1\t\tWhat is up?\tHow are you?\t1.0\n", "empty id"),
        ('1\tb\t"What\tis up?"\tHow are you?\t1.0\n', "broken quoting"),
        ('1\tb\t"What is up?\tHow are you?\t1.0\n2\tc\tx\n', "wrong number of fields (broken quoting)"),
    ],
)
def test_each_bad_row_kind_is_skipped_and_counted(tmp_path, row, reason):
    good = "0\ta\tIs this fine?\tIs this okay?\t1.0\n"
    write(tmp_path, "quora-train.csv", HEADER + good + row)
    with pytest.warns(DataWarning, match="quora-train.csv: skipped 1 malformed row") as rec:
        df = data.load_split("qqp", "train", tmp_path)
    assert len(rec) == 1
    assert df["id"].tolist() == ["a"]
    assert df.attrs["skipped"] == {reason: 1}


def test_labels_are_range_checked_per_task(tmp_path):
    write(tmp_path, "ids-sst-train.csv", "\tid\tsentence\tsentiment\n0\ta\tgood\t4\n1\tb\tbad\t5\n2\tc\tmeh\t2.5\n")
    write(tmp_path, "sts-train.csv", "\tid\tsentence1\tsentence2\tsimilarity\n0\ta\tx\ty\t4.6\n1\tb\tx\ty\t5.2\n")
    with pytest.warns(DataWarning, match="skipped 2 malformed rows"):
        sst = data.load_split("sst", "train", tmp_path)
    with pytest.warns(DataWarning, match="skipped 1 malformed row"):
        sts = data.load_split("sts", "train", tmp_path)
    assert sst["label"].tolist() == [4]
    assert sts["label"].tolist() == [4.6]


def test_clean_file_gives_no_warning(tmp_path):
    write(tmp_path, "quora-dev.csv", HEADER + "0\ta\tIs this fine?\tIs this okay?\t0.0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(data.load_split("qqp", "dev", tmp_path)) == 1


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"quora-train.csv: file not found"):
        data.load_split("qqp", "train", tmp_path)


def test_missing_column_names_it(tmp_path):
    write(tmp_path, "quora-train.csv", "\tid\tsentence1\tis_duplicate\n0\ta\tx\t1.0\n")
    with pytest.raises(DataError, match=r"quora-train.csv: missing column\(s\) sentence2"):
        data.load_split("qqp", "train", tmp_path)


def test_test_student_files_load_without_labels():
    df = data.load_split("sst", "test")
    assert df["label"].isna().all()
    assert df["id"].str.len().eq(25).all()


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_LAB_DATA", str(tmp_path))
    assert data.resolve_data_dir() == tmp_path
    other = tmp_path / "explicit"
    other.mkdir()
    assert data.resolve_data_dir(other) == other
    monkeypatch.setenv("MTL_LAB_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="MTL_LAB_DATA"):
        data.resolve_data_dir()
    monkeypatch.delenv("MTL_LAB_DATA")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ids-sst-train.csv").write_text("\tid\tsentence\tsentiment\n")
    assert data.resolve_data_dir() == tmp_path / "data"


def test_sick_splits_are_respected():
    train, trial, test = (data.load_sick(split=s) for s in ("train", "trial", "test"))
    assert len(train) + len(trial) + len(test) == 9840
    assert set(train["SemEval_set"]) == {"TRAIN"}


def test_pair_encoding_joins_the_single_encodings(tokenizer):
    df = data.load_split("sts", "dev").head(20)
    enc = data.encode(df, "sts", tokenizer, max_length=24)
    ref = tokenizer(df["sentence1"].tolist(), df["sentence2"].tolist(), truncation="longest_first", max_length=24)
    assert enc.joint == ref["input_ids"]
    assert enc.joint_types == ref["token_type_ids"]
    assert all(len(x) <= 24 for x in enc.a)


def test_bucketed_batches_cover_every_example_once_and_pad_little():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=1000)
    batches = data.bucket_batches(lengths, 32, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 1.15 * lengths.sum()  # random batches would pad ~1.8x


def test_collate_pads_and_masks(tokenizer):
    df = data.load_split("qqp", "dev").head(8)
    enc = data.encode(df, "qqp", tokenizer)
    batch = data.collate(enc, np.arange(8), ("joint", "pair"))
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"].sum(1).tolist() == [len(x) for x in enc.joint]
    assert batch["a_mask"].sum(1).tolist() == [len(x) for x in enc.a]
    assert batch["labels"].dtype.is_floating_point


def test_hub_conversion_round_trips_local_files(tmp_path):
    for task in data.TASKS:
        df = data.load_split(task, "dev").head(50)
        spec = data.TASKS[task]
        rows = [{"id": r["id"], **{c: r[c] for c in spec.text_cols}, "label": r["label"]} for _, r in df.iterrows()]
        frame = data.to_cs224n_frame(task, rows)
        data.write_cs224n_file(frame, tmp_path / data.task_file(task, "dev"))
        back = data.load_split(task, "dev", tmp_path)
        assert back["id"].tolist() == df["id"].tolist()
        assert back[list(spec.text_cols)].equals(df[list(spec.text_cols)])
        np.testing.assert_allclose(back["label"].to_numpy(float), df["label"].to_numpy(float))


def test_hub_field_mapping():
    rec = {"question1": "a?", "question2": "b?", "label": 1, "idx": 3}
    assert data.hub_records("qqp", [rec]) == [{"sentence1": "a?", "sentence2": "b?", "label": 1, "id": 3}]
    frame = data.to_cs224n_frame("qqp", data.hub_records("qqp", [rec]))
    assert frame.columns.tolist() == ["id", "sentence1", "sentence2", "is_duplicate"]
    assert frame["id"].tolist() == ["3"]  # the hub's own index


def test_downloaded_identical_texts_get_unique_ids():
    rows = [{"text": "a fine film .", "label": 3}, {"text": "a fine film .", "label": 4}, {"text": "bad .", "label": 0}]
    frame = data.to_cs224n_frame("sst", data.hub_records("sst", rows))
    assert frame["id"].is_unique
    assert all(len(i) == 25 for i in frame["id"])
    pairs = [{"sentence1": "x", "sentence2": "y", "label": 1.0}] * 3
    assert data.to_cs224n_frame("sts", pairs)["id"].is_unique
    with pytest.raises(data.DataError, match="repeat the id"):
        data.to_cs224n_frame("sts", [{**pairs[0], "id": 7}, {**pairs[0], "id": 7}])


def test_a_data_file_is_hashed_once_while_unchanged_and_again_after_an_edit(tmp_path, monkeypatch):
    import hashlib

    from mtl_lab import runs as data

    path = tmp_path / "sts-dev.csv"
    path.write_text("a\tb\n")
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(data.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    first = data.file_fingerprint(path)
    assert data.file_fingerprint(path) == first and len(calls) == 1  # the second look reads nothing
    st = path.stat()
    path.write_text("a\tc\n")  # same size, other content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert data.file_fingerprint(path)["sha256"] != first["sha256"] and len(calls) == 2
