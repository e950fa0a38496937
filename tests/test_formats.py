"""The public benchmark layouts, each on a tiny fixture written in that layout."""

import io
import json
import logging
import os
import re

import pytest
from PIL import Image

from editjudge.benchmark import gedit
from editjudge.benchmark import BENCHMARK_FORMATS, LOADERS, BenchmarkError, load_benchmark
from editjudge.paths import safe_name
from tests.conftest import ROOT

try:  # only the gedit format needs pyarrow
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:
    pa = pq = None
needs_pyarrow = pytest.mark.skipif(pa is None, reason="the gedit format needs pyarrow")

SAMPLE = ROOT / "benchmark_data" / "sample" / "annotations.jsonl"
COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def png_bytes(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), COLORS[color]).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path, color="red"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(color))


def color_of(path) -> tuple:
    with Image.open(path) as image:
        return image.convert("RGB").getpixel((0, 0))


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


# ------------------------------------------------------------------------------------------ gedit

def image_type():
    return pa.struct([("bytes", pa.binary()), ("path", pa.string())])


GEDIT_ROWS = [  # key, task_type, language, color
    ("k1", "color_alter", "en", "red"),
    ("k1", "color_alter", "cn", "red"),
    ("k2", "subject-add", "en", "green"),
    ("k3", "subject-add", "cn", "blue"),
]


def gedit_table(rows=GEDIT_ROWS, drop=()):
    columns = {
        "task_type": pa.array([r[1] for r in rows]),
        "key": pa.array([r[0] for r in rows]),
        "instruction": pa.array([f"instruction {r[0]} {r[2]}" for r in rows]),
        "instruction_language": pa.array([r[2] for r in rows]),
        "input_image": pa.array([{"bytes": png_bytes(r[3]), "path": f"{r[0]}.png"} for r in rows], image_type()),
        "input_image_raw": pa.array([{"bytes": png_bytes("blue"), "path": None} for _ in rows], image_type()),
        "Intersection_exist": pa.array([r[0] != "k2" for r in rows]),
    }
    return pa.table({name: column for name, column in columns.items() if name not in drop})


def write_parquet_gedit(root, **kwargs):
    (root / "data").mkdir(parents=True)
    table = gedit_table(**kwargs)
    # two files, as the hub splits GEdit-Bench: order must follow the file names
    pq.write_table(table.slice(0, 2), root / "data" / "train-00000-of-00002.parquet")
    pq.write_table(table.slice(2), root / "data" / "train-00001-of-00002.parquet")
    return root


def write_arrow_dataset(folder, table, stream=True):
    """What ``datasets.Dataset.save_to_disk`` writes: an arrow IPC stream, state.json, dataset_info.json."""
    folder.mkdir(parents=True)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
        writer = pa.ipc.new_stream(sink, table.schema) if stream else pa.ipc.new_file(sink, table.schema)
        with writer:
            writer.write_table(table, max_chunksize=3)
    write_json(folder / "state.json", {"_data_files": [{"filename": "data-00000-of-00001.arrow"}],
                                       "_fingerprint": "0", "_format_columns": None, "_split": "train"})
    write_json(folder / "dataset_info.json", {"features": {
        "key": {"dtype": "string", "_type": "Value"}, "input_image": {"_type": "Image"}}})


@needs_pyarrow
def test_gedit_parquet_ids_languages_and_image_cache(tmp_path):
    root = write_parquet_gedit(tmp_path / "GEdit-Bench")
    items = load_benchmark(root, "gedit")
    assert [i.id for i in items] == ["k1_en", "k1_cn", "k2_en", "k3_cn"]
    assert [i.category for i in items] == ["color_alter", "color_alter", "subject-add", "subject-add"]
    assert items[1].language == "cn" and items[1].instruction == "instruction k1 cn"
    assert [i.intersection_exist for i in items] == [True, True, False, True]
    cache = root / ".editjudge_images"
    assert all(i.image.parent == cache and i.image.suffix == ".png" for i in items)
    assert [color_of(i.image) for i in items] == [COLORS[c] for *_, c in GEDIT_ROWS]
    assert len({i.image for i in items}) == 4

    # a second load reuses the files; one whose bytes changed is rewritten
    before = {i.id: (os.stat(i.image).st_ino, os.stat(i.image).st_mtime_ns) for i in items}
    items[0].image.write_bytes(png_bytes("blue"))
    again = load_benchmark(root, "gedit")
    assert [i.image for i in again] == [i.image for i in items]
    assert (os.stat(again[2].image).st_ino, os.stat(again[2].image).st_mtime_ns) == before["k2_en"]
    assert color_of(again[0].image) == COLORS["red"]


@needs_pyarrow
@pytest.mark.parametrize("language, expected", [("en", ["k1_en", "k2_en"]), ("cn", ["k1_cn", "k3_cn"]),
                                                ("zh", ["k1_cn", "k3_cn"]), ("ZH", ["k1_cn", "k3_cn"])])
def test_gedit_language_filter_writes_only_kept_images(tmp_path, language, expected):
    root = write_parquet_gedit(tmp_path / "gedit")
    cache = tmp_path / "cache"
    items = load_benchmark(root, "gedit", language=language, image_cache=cache)
    assert [i.id for i in items] == expected
    assert sorted(p.name for p in cache.iterdir()) == sorted(i.image.name for i in items)


@needs_pyarrow
def test_gedit_filters_then_limit_before_writing(tmp_path):
    root = write_parquet_gedit(tmp_path / "gedit")
    cache = tmp_path / "cache"
    items = load_benchmark(root, "gedit", categories=["subject-add"], limit=1, image_cache=str(cache))
    assert [i.id for i in items] == ["k2_en"]
    assert [p.name for p in cache.iterdir()] == [items[0].image.name]
    with pytest.raises(BenchmarkError, match=r"no items in language 'fr'; languages present: \['cn', 'en'\]"):
        load_benchmark(root, "gedit", language="fr", image_cache=cache)


@needs_pyarrow
@pytest.mark.parametrize("stream", [True, False])
def test_gedit_save_to_disk_dataset_and_dataset_dict(tmp_path, stream):
    write_arrow_dataset(tmp_path / "ds", gedit_table(), stream=stream)
    items = load_benchmark(tmp_path / "ds", "gedit", image_cache=tmp_path / "c1")
    assert [i.id for i in items] == ["k1_en", "k1_cn", "k2_en", "k3_cn"]
    assert color_of(items[2].image) == COLORS["green"]
    assert [i.intersection_exist for i in items] == [True, True, False, True]

    write_arrow_dataset(tmp_path / "dd" / "train", gedit_table())
    write_json(tmp_path / "dd" / "dataset_dict.json", {"splits": ["train"]})
    items = load_benchmark(tmp_path / "dd", "gedit", language="en")
    assert [i.id for i in items] == ["k1_en", "k2_en"]
    assert items[0].image.parent == tmp_path / "dd" / ".editjudge_images"


@needs_pyarrow
def test_gedit_without_intersection_column(tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(gedit_table(drop=("Intersection_exist",)), tmp_path / "data" / "train.parquet")
    assert [i.intersection_exist for i in load_benchmark(tmp_path, "gedit")] == [None] * 4


@needs_pyarrow
def test_gedit_image_given_by_path_only(tmp_path):
    table = gedit_table(GEDIT_ROWS[:1]).set_column(
        4, "input_image", pa.array([{"bytes": None, "path": "images/k1.png"}], image_type()))
    pq.write_table(table, tmp_path / "one.parquet")
    items = load_benchmark(tmp_path / "one.parquet", "gedit")
    assert items[0].image == tmp_path / "images" / "k1.png"  # missing file: the pipeline reports it


@needs_pyarrow
def test_gedit_errors_name_file_and_row(tmp_path):
    write_parquet_gedit(tmp_path / "a", drop=("instruction_language",))
    with pytest.raises(BenchmarkError, match=r"train-00000-of-00002.parquet: missing column\(s\) \['instruction_language'\]"):
        load_benchmark(tmp_path / "a", "gedit")

    rows = [("k1", "c", "en", "red"), ("k1", "c", "en", "green")]
    write_parquet_gedit(tmp_path / "b", rows=rows)
    with pytest.raises(BenchmarkError, match=r"train-00000-of-00002.parquet: row 1 \(key 'k1'\): duplicate id 'k1_en'"):
        load_benchmark(tmp_path / "b", "gedit")

    table = gedit_table(GEDIT_ROWS[:2]).set_column(1, "key", pa.array(["k1", None]))
    pq.write_table(table, tmp_path / "c.parquet")
    with pytest.raises(BenchmarkError, match=r"c.parquet: row 1 \(key None\): .*\['key'\]"):
        load_benchmark(tmp_path / "c.parquet", "gedit")

    table = gedit_table(GEDIT_ROWS[:2]).set_column(4, "input_image", pa.array([None, None], image_type()))
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(BenchmarkError, match=r"d.parquet: row 0 \(item 'k1_en'\): no input_image"):
        load_benchmark(tmp_path / "d.parquet", "gedit", image_cache=tmp_path / "cache")

    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkError, match="no parquet files and no save_to_disk folder"):
        load_benchmark(tmp_path / "empty", "gedit")


@needs_pyarrow
def test_gedit_unwritable_data_folder_falls_back_to_a_private_temp_dir(tmp_path, monkeypatch):
    root = write_parquet_gedit(tmp_path / "gedit")
    monkeypatch.setattr(gedit.os, "access", lambda *args: False)
    monkeypatch.setattr(gedit.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    items = load_benchmark(root, "gedit", limit=1)
    cache = items[0].image.parent
    assert cache.parent == tmp_path / "tmp" and cache.name.startswith(f"editjudge-images-{os.getuid()}-")
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)
    assert load_benchmark(root, "gedit", limit=1)[0].image == items[0].image  # stable: reused next time


def test_cache_names_never_escape_and_never_collide(tmp_path):
    ids = ["../../etc/passwd", "a/b", "a_b", "a\x00b", "..", ".", "", "/abs", "é/ü", "x" * 300, "C:\\win",
           "a_b=" + "0" * 12]
    names = [safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert safe_name("color_material_001") == "color_material_001"  # plain ids keep their name
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._=-]*", name) and len(name) <= 100
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()


@needs_pyarrow
def test_gedit_hostile_keys_stay_in_the_cache(tmp_path):
    rows = [("../../evil", "c", "en", "red"), ("..", "c", "cn", "green")]
    write_parquet_gedit(tmp_path / "g", rows=rows)
    cache = tmp_path / "g" / "cache"
    items = load_benchmark(tmp_path / "g", "gedit", image_cache=cache)
    assert [i.image.parent for i in items] == [cache, cache]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


# ---------------------------------------------------------------------------------------- imgedit

def write_imgedit(root, records=None):
    records = records or {
        "1082": {"id": "animal/000342021.jpg", "prompt": "Change the shell texture.", "edit_type": "alter"},
        "673": {"id": "style/000278574.jpg", "prompt": "Ukiyo-e style.", "edit_type": "style"},
        "628": {"id": "daily object/000276684.jpg", "prompt": "Replace the boot.", "edit_type": "replace"},
    }
    write_json(root / "basic_edit.json", records)
    write_png(root / "Benchmark" / "singleturn" / "animal" / "000342021.jpg")
    write_png(root / "Benchmark" / "singleturn" / "daily object" / "000276684.jpg")
    return root


def test_imgedit_layout(tmp_path):
    root = write_imgedit(tmp_path / "imgedit")
    for path in (root, root / "basic_edit.json"):
        items = load_benchmark(path, "imgedit")
        assert [i.id for i in items] == ["1082", "673", "628"]
        assert [i.category for i in items] == ["alter", "style", "replace"]
        assert items[0].image == root / "Benchmark" / "singleturn" / "animal" / "000342021.jpg"
        assert items[0].image.is_file() and items[2].image.is_file()
        assert not items[1].image.exists()  # missing images are the pipeline's to report
        assert {i.language for i in items} == {"en"}
    # flat layout: images next to the json
    write_json(tmp_path / "flat" / "basic_edit.json", {"1": {"id": "a/1.png", "prompt": "p", "edit_type": "add"}})
    assert load_benchmark(tmp_path / "flat", "imgedit")[0].image == tmp_path / "flat" / "a" / "1.png"


def test_imgedit_errors_name_file_and_key(tmp_path):
    write_imgedit(tmp_path / "a", {"7": {"id": "x.png", "edit_type": "add"}})
    with pytest.raises(BenchmarkError, match=r"basic_edit.json: record '7': .*\['prompt'\]"):
        load_benchmark(tmp_path / "a", "imgedit")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "basic_edit.json").write_text(
        '{"1": {"id": "x.png", "prompt": "p", "edit_type": "add"},\n "1": {"id": "y.png", "prompt": "q", "edit_type": "add"}}')
    with pytest.raises(BenchmarkError, match=r"basic_edit.json: duplicate key '1'"):
        load_benchmark(tmp_path / "b", "imgedit")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "basic_edit.json").write_text('{"1": {"id": ')
    with pytest.raises(BenchmarkError, match=r"basic_edit.json:1: not valid JSON"):
        load_benchmark(tmp_path / "c", "imgedit")
    with pytest.raises(BenchmarkError, match=r"no basic_edit.json"):
        load_benchmark(tmp_path / "nowhere", "imgedit")


# ------------------------------------------------------------------------------------------- kris

def write_kris(repo):
    bench = repo / "KRIS_Bench"
    write_json(bench / "color_change" / "annotation.json", {
        "1": {"ori_img": "1.jpg", "ins_en": "Make the car red.", "explain_en": ""},
        "2": {"ori_img": "2.png", "ins_en": "Make the sky green.", "explain_en": ""},
    })
    write_png(bench / "color_change" / "1.jpg")
    write_json(bench / "viewpoint_change" / "annotation.json", {
        "1": {"ori_img": "1.jpg", "gt_img": "1_gt.jpg", "ins_en": "Draw the front view.", "explain_en": ""},
    })
    write_json(bench / "multi-element_composition" / "annotation.json", {
        "1": {"ori_img": ["1-1.jpg", "1-2.jpg"], "gt_img": "", "ins_en": "Dress the person.", "explain_en": ""},
        "2": {"ori_img": ["2-1.jpg"], "gt_img": "", "ins_en": "One image in a list.", "explain_en": ""},
    })
    return bench


def test_kris_layout(tmp_path, caplog):
    bench = write_kris(tmp_path / "repo")
    with caplog.at_level(logging.WARNING, logger="editjudge.benchmark"):
        for path in (tmp_path / "repo", bench):
            items = load_benchmark(path, "kris")
            assert [i.id for i in items] == ["color_change/1", "color_change/2", "multi-element_composition/2",
                                             "viewpoint_change/1"]
            assert items[0].image == bench / "color_change" / "1.jpg" and items[0].image.is_file()
            assert items[2].image == bench / "multi-element_composition" / "2-1.jpg"
            assert items[3].reference_image == bench / "viewpoint_change" / "1_gt.jpg"
            assert items[0].reference_image is None and items[2].reference_image is None
            assert items[3].category == "viewpoint_change" and items[3].instruction == "Draw the front view."
    assert "skipped 1 multi-image record(s)" in caplog.text and "multi-element_composition/1" in caplog.text
    one = load_benchmark(bench / "viewpoint_change" / "annotation.json", "kris")
    assert [i.id for i in one] == ["viewpoint_change/1"]


def test_kris_errors_name_file_and_key(tmp_path):
    write_json(tmp_path / "k" / "physics" / "annotation.json", {"3": {"ins_en": "no image field"}})
    with pytest.raises(BenchmarkError, match=r"physics/annotation.json: record '3': field 'ori_img' must be"):
        load_benchmark(tmp_path / "k", "kris")
    write_json(tmp_path / "k" / "physics" / "annotation.json", {"4": {"ori_img": "4.jpg"}})
    with pytest.raises(BenchmarkError, match=r"physics/annotation.json: record '4': .*\['ins_en'\]"):
        load_benchmark(tmp_path / "k", "kris")
    with pytest.raises(BenchmarkError, match=r"no <category>/annotation.json"):
        load_benchmark(tmp_path / "nothing", "kris")


# ------------------------------------------------------------------------------------------- rise

def write_rise(repo, extra=()):
    data = repo / "data"
    records = [
        {"index": "temporal_reasoning_1", "category": "temporal_reasoning", "instruction": "One year later.",
         "image": "temporal_reasoning_images/1.png", "reference": "A rotten banana."},
        {"index": "spatial_reasoning_1", "category": "spatial_reasoning", "instruction": "Pen right of mouse.",
         "image": ["spatial_reasoning_images/1.png"], "reference_img": "spatial_reasoning_images/1_ref.png"},
        {"index": "causal_reasoning_6", "category": "causal_reasoning", "instruction": "Two images.",
         "image": ["causal_reasoning_images/6_1.png", "causal_reasoning_images/6_2.png"]},
        {"index": 7, "category": "logical_reasoning", "instruction": "Solve.", "image": "logical_reasoning_images/7.png"},
        *extra,
    ]
    write_json(data / "data_total.json", records)
    write_png(data / "temporal_reasoning_images" / "1.png")
    return data


def test_rise_layout(tmp_path, caplog):
    data = write_rise(tmp_path / "RISEBench")
    with caplog.at_level(logging.WARNING, logger="editjudge.benchmark"):
        for path in (tmp_path / "RISEBench", data, data / "data_total.json"):
            items = load_benchmark(path, "rise")
            assert [i.id for i in items] == ["temporal_reasoning_1", "spatial_reasoning_1", "7"]
            assert items[0].image == data / "temporal_reasoning_images" / "1.png" and items[0].image.is_file()
            assert items[1].reference_image == data / "spatial_reasoning_images" / "1_ref.png"
            assert items[0].reference_image is None
    assert "skipped 1 multi-image record(s)" in caplog.text and "causal_reasoning_6" in caplog.text
    assert [i.id for i in load_benchmark(data, "rise", categories=["logical_reasoning"])] == ["7"]


def test_rise_errors_name_file_and_record(tmp_path):
    write_rise(tmp_path / "a", [{"index": "x_1", "category": "c", "instruction": "no image"}])
    with pytest.raises(BenchmarkError, match=r"data_total.json: record 4 \(index 'x_1'\): field 'image' must be"):
        load_benchmark(tmp_path / "a", "rise")
    write_rise(tmp_path / "b", [{"index": "temporal_reasoning_1", "category": "c", "instruction": "i", "image": "y.png"}])
    with pytest.raises(BenchmarkError, match=r"record 4 \(index 'temporal_reasoning_1'\): duplicate id"):
        load_benchmark(tmp_path / "b", "rise")
    write_rise(tmp_path / "c", [{"category": "c", "instruction": "i", "image": "y.png"}])
    with pytest.raises(BenchmarkError, match=r"record 4 \(index None\): field 'index'"):
        load_benchmark(tmp_path / "c", "rise")


# ---------------------------------------------------------------------------------- load_benchmark

def test_formats_registry_and_native_language_filter():
    assert BENCHMARK_FORMATS == tuple(LOADERS) == ("native", "gedit", "imgedit", "kris", "rise")
    everything = load_benchmark(SAMPLE, "native", None, None)  # the old positional signature
    zh = load_benchmark(SAMPLE, language="zh")
    assert zh == load_benchmark(SAMPLE, language="cn") and zh
    assert {i.language for i in zh} == {"zh"}
    en = load_benchmark(SAMPLE, language="en")
    assert len(en) + len(zh) == len(everything)
    assert load_benchmark(SAMPLE, categories=["style"], limit=2, language="en") == \
        [i for i in en if i.category == "style"][:2]
    with pytest.raises(BenchmarkError, match=r"no items in language 'de'; languages present: \['en', 'zh'\]"):
        load_benchmark(SAMPLE, language="de")


def test_image_suffix_from_magic_bytes_then_a_safe_path_suffix():
    from editjudge.benchmark import _image_suffix

    assert _image_suffix(b"\x89PNG\r\n", None) == ".png" and _image_suffix(b"RIFF0000WEBPVP8", "x.png") == ".webp"
    assert _image_suffix(b"????", "photo.TIFF") == ".tiff"  # unknown bytes: the path's suffix, if it is plain
    assert _image_suffix(b"????", "evil.p/ng") == ".img" and _image_suffix(b"????", None) == ".img"
