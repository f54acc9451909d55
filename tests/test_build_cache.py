"""The build cache keeps a build once, outside the clone, and gives it back only when every file
still matches its manifest; a second clone's `zoo build` restores the zoo instead of training it."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

from harness import build_cache
from harness.cli import main


def _build(folder: Path) -> Path:
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (folder / "model" / "README.md").write_text(f"merged from {folder.resolve()}/parent_a\n", encoding="utf-8")
    return folder


def test_a_stored_build_comes_back_byte_for_byte_with_its_own_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("PARENTAGE_BUILD_CACHE", str(tmp_path / "store"))
    src = _build(tmp_path / "clone1" / "zoo")
    build_cache.store("zoo-x", "k1", src, log=lambda _: None)
    dest = tmp_path / "clone2" / "zoo"
    assert build_cache.restore("zoo-x", "k1", dest, log=lambda _: None)
    assert (dest / "model" / "weights.bin").read_bytes() == (src / "model" / "weights.bin").read_bytes()
    # The recipe names the new clone's parents, not the first clone's.
    assert (dest / "model" / "README.md").read_text() == f"merged from {dest.resolve()}/parent_a\n"
    assert not build_cache.restore("zoo-x", "other-key", tmp_path / "clone3", log=lambda _: None)


def test_an_entry_that_fails_its_manifest_is_removed_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("PARENTAGE_BUILD_CACHE", str(tmp_path / "store"))
    src = _build(tmp_path / "clone1" / "zoo")
    build_cache.store("zoo-x", "k1", src, log=lambda _: None)
    stored = build_cache.entry("zoo-x", "k1")
    assert stored is not None
    blob = stored / "model" / "weights.bin"
    blob.unlink()  # a hard link: replace the stored file, leave the clone's alone
    blob.write_bytes(b"corrupt")
    said: list[str] = []
    assert not build_cache.restore("zoo-x", "k1", tmp_path / "clone2" / "zoo", log=said.append)
    assert not stored.exists() and "fails its manifest (1 file(s) differ)" in said[0]
    assert not (tmp_path / "clone2" / "zoo").exists()


def test_the_key_covers_code_and_inputs_and_off_disables_the_store(tmp_path, monkeypatch):
    code = tmp_path / "builder.py"
    code.write_text("STEPS = 30\n")
    k = build_cache.key([code], {"seed": 0})
    assert build_cache.key([code], {"seed": 0}) == k
    assert build_cache.key([code], {"seed": 1}) != k
    code.write_text("STEPS = 31\n")
    assert build_cache.key([code], {"seed": 0}) != k
    monkeypatch.setenv("PARENTAGE_BUILD_CACHE", "off")
    assert build_cache.root() is None
    build_cache.store("zoo-x", "k", _build(tmp_path / "c"), log=lambda _: None)  # a no-op, no error


def test_a_second_clone_restores_the_tiny_zoo_instead_of_training_it(tmp_path, monkeypatch, capsys, zoo):
    monkeypatch.setenv("PARENTAGE_BUILD_CACHE", str(tmp_path / "store"))
    assert main(["zoo", "build", "tiny", "--out", str(zoo)]) == 0  # already built here: kept in the store
    assert "zoo already built" in capsys.readouterr().out
    second = tmp_path / "clone2" / "tiny"
    assert main(["zoo", "build", "tiny", "--out", str(second)]) == 0
    out = capsys.readouterr().out
    assert "zoo-tiny restored from" in out and "zoo already built" in out and "building tiny zoo" not in out
    assert json.loads((second / "zoo.json").read_text()) == json.loads((zoo / "zoo.json").read_text())
    for f in (zoo / "linear_0.6").iterdir():
        if f.suffix not in build_cache.TEXT_SUFFIXES:
            assert filecmp.cmp(f, second / "linear_0.6" / f.name, shallow=False), f.name
    recipe = (second / "ties" / "mergekit_config.yml").read_text()
    assert str(second.resolve()) in recipe and str(zoo.resolve()) not in recipe
