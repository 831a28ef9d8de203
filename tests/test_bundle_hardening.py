"""Bundles and runs, hardened (issue 13, items 5-12 and the checkpoint half of 18).

One atomic folder writer and one manifest reader/writer serve bundles, checkpoints, exports,
reports and cache entries; each probe of the issue is a test here, plus property tests that
whatever bytes a manifest holds, reading it gives a result or a headstart error.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headstart
from conftest import make_texts
from headstart import BundleError, ConfigError, HeadstartError, TransferClassifier
from headstart import atomic as atomic_module
from headstart.atomic import atomic_folder, check_writable, recover, write_file
from headstart.bundle import MANIFEST, WEIGHTS, manifest_digest, read_manifest
from headstart.classifier import load_bundle
from headstart.cli.app import run
from headstart.errors import OutputError
from headstart.manifest import write_manifest
from headstart.training import checkpoint as ckpt

QUICK = ("--no-compare", "--no-learning-curve", "-q")
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fitted() -> TransferClassifier:
    texts, labels = make_texts(10)
    return TransferClassifier(backbone="tiny-bert", random_state=0, cache=False).fit(texts, labels)


@pytest.fixture(scope="module")
def saved(fitted: TransferClassifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted.save(tmp_path_factory.mktemp("saved") / "bundle")


def _copy(bundle: Path, where: Path) -> Path:
    return Path(shutil.copytree(bundle, where))


def _rewrite(folder: Path, change: Any) -> None:
    """Edit the manifest and recompute its digest, as a careful attacker (or a buggy tool) would."""
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _sibling(final: Path, kind: str, pid: int, rand: str = "0123abcd") -> Path:
    return final.parent / f".{final.name}.{kind}-{pid}-{atomic_module._HOST}-{rand}"


@pytest.fixture
def umask() -> Iterator[Any]:
    before = os.umask(0o022)
    yield os.umask
    os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ 5. other files are never deleted
def test_refitting_over_a_bundle_with_other_files_is_refused_before_any_work(
    saved: Path, text_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = _copy(saved, tmp_path / "runs" / "texts")
    (bundle / "notes.txt").write_text("mine")
    (bundle / "sub").mkdir()
    (bundle / "sub" / "important.csv").write_text("a,b\n")
    import headstart.data

    monkeypatch.setattr(headstart.data, "load_data", lambda *a, **k: pytest.fail("the data was loaded"))
    code, out, err = _cli(capsys, "fit", text_table, "--backbone", "tiny-bert", "--out", bundle, *QUICK)
    message = " ".join(err.split())
    assert code == 1 and out == "" and "Traceback" not in err
    assert "notes.txt" in message and "sub/important.csv" in message
    assert "another --out" in message and "move those files" in message
    assert (bundle / "notes.txt").read_text() == "mine" and (bundle / "sub" / "important.csv").is_file()


def test_saving_from_python_never_deletes_other_files(fitted: TransferClassifier, saved: Path, tmp_path: Path) -> None:
    bundle = _copy(saved, tmp_path / "b")
    (bundle / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match=r"notes\.txt"):
        fitted.save(bundle)
    assert (bundle / "notes.txt").read_text() == "mine"
    (bundle / "notes.txt").unlink()
    (bundle / "report.html").write_text("<html>")  # the bundle's own page (`headstart report`) is fine
    fitted.save(bundle, attachments={"extra.json": "{}"})
    assert json.loads((bundle / MANIFEST).read_text())["attachments"] == ["extra.json"]
    fitted.save(bundle)  # an earlier attachment is the bundle's own too


# ------------------------------------------------------------------ 6. umask permissions
@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_everything_written_honours_the_umask(fitted: TransferClassifier, saved: Path, tmp_path: Path, umask: Any,
                                              mask: int, file_mode: int, dir_mode: int) -> None:
    umask(mask)
    bundle = fitted.save(tmp_path / "b", attachments={"report.html": "<html>"})
    assert _mode(bundle) == dir_mode
    for name in (WEIGHTS, MANIFEST, "report.html"):
        assert _mode(bundle / name) == file_mode, name  # safetensors alone would write 0600
    ckpt.save_checkpoint(tmp_path / "run", model_state={"w": torch.ones(2)}, best_state=None,
                         optimizer_state={}, state={})
    assert {_mode(p) for p in (tmp_path / "run" / "checkpoint").iterdir()} == {file_mode}
    assert _mode(write_file(tmp_path / "page.html", "x")) == file_mode
    old = _copy(saved, tmp_path / "old")  # a bundle an older headstart wrote 0600: a rewrite fixes it
    (old / WEIGHTS).chmod(0o600)
    with atomic_folder(old, start_from=old):
        pass
    assert _mode(old / WEIGHTS) == file_mode


# ------------------------------------------------------------------ 7. an unusable --out is found first
def _unusable_outs(tmp_path: Path) -> list[Path]:
    (tmp_path / "file.txt").write_text("x")
    outs = [tmp_path / "file.txt" / "run", tmp_path / "file.txt"]
    if Path("/proc/self").is_dir():
        outs.append(Path("/proc/headstart-test/run"))
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        outs.append(tmp_path / "ro" / "run")
    return outs


def test_an_unusable_out_is_refused_before_any_work(text_table: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import headstart.data

    monkeypatch.setattr(headstart.data, "load_data", lambda *a, **k: pytest.fail("the data was loaded"))
    for out in _unusable_outs(tmp_path):
        code, stdout, err = _cli(capsys, "fit", text_table, "--backbone", "tiny-bert", "--out", out, *QUICK)
        assert code == 1 and stdout == "" and "Traceback" not in err, (out, err)
        assert str(out) in " ".join(err.split()) and "--out" in err, err


def test_the_python_api_checks_its_run_dir_first(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError, match="run_dir"):
        TransferClassifier(backbone="tiny-bert", strategy="partial").fit(["a"], ["b"], run_dir=tmp_path / "file.txt" / "r")


# ------------------------------------------------------------------ 8. an interrupted swap is recovered
_KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
import headstart.atomic as atomic
real = os.rename
def rename(src, dst):
    real(src, dst)
    if Path(dst).name.startswith("." + Path(sys.argv[1]).name + ".old-"):
        os.kill(os.getpid(), signal.SIGKILL)  # the old bundle is aside, the new one not yet in place
os.rename = rename
with atomic.atomic_folder(sys.argv[1], start_from=sys.argv[2]):
    pass
"""


def test_a_kill_between_the_renames_is_finished_by_the_next_command(
    fitted: TransferClassifier, saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _copy(saved, tmp_path / "b")
    newer = fitted.save(tmp_path / "newer", extra={"note": "newer"})
    killed = subprocess.run([sys.executable, "-c", _KILL_BETWEEN_RENAMES, str(bundle), str(newer)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not bundle.exists()
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir() if p.name.startswith(".b.")) == [".b.new", ".b.old"]
    (tmp_path / "texts.txt").write_text("good great\n")
    code, _, err = _cli(capsys, "predict", bundle, tmp_path / "texts.txt", "--json", "-q")  # recovers it
    assert code == 0, err
    assert read_manifest(bundle)["note"] == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "newer", "texts.txt"]


def test_a_swap_left_by_an_older_headstart_is_rolled_back(saved: Path, tmp_path: Path) -> None:
    # headstart <= 0.1: old bundle moved to .NAME.old-RAND, new one still in .NAME.tmp-RAND.
    _copy(saved, tmp_path / ".b.old-1a2b3c4d")
    _copy(saved, tmp_path / ".b.tmp-5e6f7a8b")
    headstart.load(tmp_path / "b")
    assert (tmp_path / "b" / MANIFEST).is_file() and not (tmp_path / ".b.old-1a2b3c4d").exists()


def test_recovery_rules(tmp_path: Path) -> None:
    final, dead = tmp_path / "x", _dead_pid()

    def folder(path: Path, text: str) -> Path:
        path.mkdir()
        (path / "v.txt").write_text(text)
        return path

    folder(_sibling(final, "old", dead), "old")  # only the previous version survived: roll back
    recover(final)
    assert (final / "v.txt").read_text() == "old"
    folder(_sibling(final, "new", dead), "new")  # a complete version was not yet swapped in: finish
    recover(final)
    assert (final / "v.txt").read_text() == "new"
    folder(_sibling(final, "tmp", dead), "half")  # incomplete, its writer is dead: delete
    mine = folder(_sibling(final, "tmp", os.getpid()), "being written")  # a live writer's: keep
    recover(final)
    assert (final / "v.txt").read_text() == "new" and mine.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x", mine.name])
    ancient = folder(_sibling(final, "tmp", os.getpid(), "99999999"), "abandoned long ago")
    os.utime(ancient, (0, 0))
    recover(final)
    assert not ancient.exists()


def test_killed_writers_leave_no_hidden_folders_forever(fitted: TransferClassifier, tmp_path: Path) -> None:
    from headstart.embedding_cache import EmbeddingCache

    dead = _dead_pid()
    bundle = tmp_path / "b"
    half = _sibling(bundle, "tmp", dead)
    half.mkdir()
    (half / WEIGHTS).write_bytes(b"\0" * 1000)
    fitted.save(bundle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]

    cache = EmbeddingCache(tmp_path / "cache")
    cache.store("a" * 64, ["0" * 64], torch.zeros(1, 4).numpy(), {"backbone": "t"})
    shard_dir = next((tmp_path / "cache" / "embeddings").iterdir())
    stale = _sibling(shard_dir / "shard-x.safetensors", "tmp", dead)
    stale.write_bytes(b"half a shard")
    EmbeddingCache(tmp_path / "cache").store("a" * 64, ["1" * 64], torch.zeros(1, 4).numpy(), {"backbone": "t"})
    assert not stale.exists()


# ------------------------------------------------------------------ 9. a kill during the first checkpoint
_KILL_IN_FIRST_CHECKPOINT = """
import os, signal, sys
import headstart.training.checkpoint as ckpt
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # weights written, manifest not: a half checkpoint
ckpt.write_manifest = die
from headstart.cli.app import run
run(sys.argv[1:])
"""


def test_a_fit_killed_in_its_first_checkpoint_is_restartable(text_table: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    command = ["fit", str(text_table), "--backbone", "tiny-bert", "--strategy", "partial", "--epochs", "1",
               "--out", str(out), *QUICK]
    killed = subprocess.run([sys.executable, "-c", _KILL_IN_FIRST_CHECKPOINT, *command], capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [p.name.split("-")[0] for p in out.iterdir()] == [".checkpoint.tmp"]  # the hidden half checkpoint
    code, _, err = _cli(capsys, *command, "--resume", out)
    message = " ".join(err.split())
    assert code == 1 and "no interrupted fit" in message and "without --resume: it starts over" in message
    assert list(out.iterdir()) == []  # the dead fit's temporary folder is gone
    code, _, err = _cli(capsys, *command)  # the same command starts over
    assert code == 0, err
    headstart.load(out)


# ------------------------------------------------------------------ 10. every file the bundle uses is inside and hashed
def _with_tokenizer(saved: Path, where: Path, tokenizer: str) -> Path:
    from headstart.backbones import create_backbone

    bundle = _copy(saved, where)
    create_backbone("tiny-bert").tokenizer.backend_tokenizer.save(str(bundle / "tokenizer.json"))
    (bundle / "model.onnx").write_bytes(b"not really onnx")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["onnx"] = {"file": "model.onnx", "preprocessing": {"kind": "text", "tokenizer": tokenizer}}
    write_manifest(bundle, manifest, files=[WEIGHTS, "model.onnx", "tokenizer.json"])
    return bundle


def test_the_tokenizer_must_be_inside_the_bundle_and_hashed(saved: Path, tmp_path: Path) -> None:
    from headstart.modalities.text import TextPreprocessor

    assert read_manifest(_with_tokenizer(saved, tmp_path / "ok", "tokenizer.json"))["onnx"]
    outside = tmp_path / "elsewhere.json"
    shutil.copy(tmp_path / "ok" / "tokenizer.json", outside)
    for i, name in enumerate([str(outside), "../elsewhere.json", "sub/../tokenizer.json", "unlisted.json"]):
        bundle = _with_tokenizer(saved, tmp_path / f"b{i}", name)
        (bundle / "unlisted.json").write_text("{}")
        with pytest.raises(BundleError, match="verified files"):
            read_manifest(bundle)
    link = _with_tokenizer(saved, tmp_path / "link", "tokenizer.json")
    (link / "tokenizer.json").unlink()
    (link / "tokenizer.json").symlink_to(outside)  # listed and hashed, but a link leading out
    with pytest.raises(BundleError, match="symbolic link"):
        read_manifest(link)
    with pytest.raises(BundleError, match="may not hold"):  # the preprocessor refuses a path by itself
        TextPreprocessor({"inputs": ["input_ids"], "tokenizer": str(outside)}, tmp_path / "ok")


# ------------------------------------------------------------------ 11. labels against the head
def _three_classes(manifest: dict) -> None:
    manifest["head"]["n_classes"] = 3
    manifest["labels"].append("x")


@pytest.mark.parametrize("change,expected", [
    (lambda m: m.update(labels=m["labels"][:1]), "has 1 labels but the model's head has 2 outputs"),
    (lambda m: m.update(labels=[m["labels"][0]] * 2), "more than once"),
    (lambda m: m.update(labels=[["a"], "b"]), "strings or numbers"),
    (lambda m: _three_classes(m), "shape"),
])
def test_labels_are_checked_against_the_head(change: Any, expected: str, saved: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(saved, tmp_path / "b")
    _rewrite(bundle, change)
    with pytest.raises(BundleError, match=expected):
        headstart.load(bundle)
    code, out, err = _cli(capsys, "predict", bundle, "-q", "--", "good")
    assert code == 1 and out == "" and "Traceback" not in err


def test_duplicate_labels_are_refused_at_save(fitted: TransferClassifier, tmp_path: Path) -> None:
    import copy

    broken = copy.copy(fitted)
    broken.classes_ = fitted.classes_[[0, 0]]
    with pytest.raises(BundleError, match="more than once"):
        broken.save(tmp_path / "b")
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------ 12. every failure is a clear message
def test_a_deeply_nested_manifest_is_a_clear_error(saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(saved, tmp_path / "b")
    (bundle / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="nested too deeply"):
        headstart.load(bundle)
    code, _, err = _cli(capsys, "predict", bundle, "-q", "--", "good")
    assert code == 1 and "Traceback" not in err and "nested too deeply" in err


def test_audit_and_report_pages_to_unwritable_paths(text_table: Path, saved: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file.txt").write_text("x")
    page = tmp_path / "file.txt" / "audit.html"
    monkeypatch.setattr(sys.modules["headstart.audit"], "audit", lambda *a, **k: pytest.fail("audit ran"))
    code, out, err = _cli(capsys, "audit", text_table, "--backbone", "none", "--html", page)
    assert code == 1 and out == "" and "Traceback" not in err
    assert str(page) in " ".join(err.split()) and "--html" in err
    with pytest.raises(OutputError, match="cannot write"):
        write_file(page, "<html>")
    with pytest.raises(OutputError, match="it is a folder"):
        write_file(tmp_path, "<html>")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(tmp_path / "file.txt" / "x" / "y")


# ------------------------------------------------------------------ 18. checkpoints: safetensors + JSON only
def test_checkpoints_hold_no_pickle_and_restore_the_optimizer_exactly(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    saved_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    ckpt.save_checkpoint(tmp_path, model_state=model.state_dict(), best_state=model.state_dict(),
                         optimizer_state=saved_state, state={"result": {"epochs_run": 1}})
    folder = tmp_path / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.safetensors", "checkpoint.json", "model.safetensors", "optimizer.safetensors"]
    loaded = ckpt.load_checkpoint(tmp_path)
    restored = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    restored.load_state_dict(loaded["optimizer"]["optimizer"])
    a, b = optimizer.state_dict(), restored.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid, entry in a["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, b["state"][pid][key]) and value.dtype == b["state"][pid][key].dtype
    assert loaded["optimizer"]["scheduler"] == scheduler.state_dict()
    assert loaded["state"] == {"result": {"epochs_run": 1}}

    data = bytearray((folder / "optimizer.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "optimizer.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the sha256"):
        ckpt.load_checkpoint(tmp_path)


def test_an_old_pickle_checkpoint_is_refused_not_unpickled(tmp_path: Path) -> None:
    legacy = tmp_path / "checkpoint"
    legacy.mkdir()
    (legacy / "state.json").write_text("{}")
    (legacy / "optimizer.pt").write_bytes(b"\x80\x04K\x01.")
    assert ckpt.has_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match=r"older headstart.*delete"):
        ckpt.load_checkpoint(tmp_path)


# ------------------------------------------------------------------ the manifest reader, property-based
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


def _key_paths(value: Any, prefix: tuple = (), depth: int = 3) -> list[tuple]:
    paths = []
    if isinstance(value, dict) and depth:
        for k, v in value.items():
            paths.append((*prefix, k))
            paths += _key_paths(v, (*prefix, k), depth - 1)
    return paths


def _outcome(folder: Path, *, load: bool = False) -> None:
    """Reading gives a manifest (and loading a model), or a headstart error: never anything else."""
    try:
        read_manifest(folder)
        if load:
            load_bundle(folder)
    except HeadstartError:
        pass


@HYPOTHESIS
@given(raw=st.binary(max_size=300))
def test_any_bytes_as_a_manifest(raw: bytes, saved: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _copy(saved, Path(tmp) / "b")
        (bundle / MANIFEST).write_bytes(raw)
        _outcome(bundle)


@HYPOTHESIS
@given(encoding=st.sampled_from(["utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]),
       value=_JSON)
def test_any_json_in_any_encoding(encoding: str, value: Any, saved: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _copy(saved, Path(tmp) / "b")
        (bundle / MANIFEST).write_bytes(json.dumps(value).encode(encoding, errors="replace"))
        _outcome(bundle)
        manifest = json.loads((saved / MANIFEST).read_text())
        (bundle / MANIFEST).write_bytes(json.dumps(manifest).encode(encoding, errors="replace"))
        _outcome(bundle)


@HYPOTHESIS
@given(depth=st.integers(1, 5000), kind=st.sampled_from(["[", '{"a":']))
def test_any_nesting(depth: int, kind: str, saved: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _copy(saved, Path(tmp) / "b")
        closing = "]" if kind == "[" else "}"
        (bundle / MANIFEST).write_text(kind * depth + "1" + closing * depth)
        _outcome(bundle)


@HYPOTHESIS
@given(data=st.data(), value=_JSON)
def test_a_wrong_value_in_any_field(data: st.DataObject, value: Any, saved: Path) -> None:
    manifest = json.loads((saved / MANIFEST).read_text())
    path = data.draw(st.sampled_from(_key_paths(manifest)))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _copy(saved, Path(tmp) / "b")

        def change(m: dict) -> None:
            node = m
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value

        _rewrite(bundle, change)
        _outcome(bundle, load=True)


@HYPOTHESIS
@given(value=_JSON)
def test_a_checkpoint_manifest_holding_anything(value: Any, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    if not folder.is_dir():
        ckpt.save_checkpoint(tmp_path, model_state={"w": torch.ones(2)}, best_state=None, optimizer_state={},
                             state={})
    manifest = json.loads((folder / "checkpoint.json").read_text())
    manifest.update(value if isinstance(value, dict) else {"optimizer": value})
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (folder / "checkpoint.json").write_text(json.dumps(manifest))
    try:
        ckpt.load_checkpoint(tmp_path)
    except HeadstartError:
        pass


def test_contrastive_resumes_through_the_shared_checkpoint_and_only_its_own_fit(tmp_path: Path) -> None:
    texts, labels = make_texts(6)
    params = {"backbone": "tiny-bert", "strategy": "contrastive", "strategy_params": {"steps": 2},
              "cache": False}
    first = TransferClassifier(**params, random_state=1).fit(texts, labels, run_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir())[-1] == "optimizer.safetensors"
    again = TransferClassifier(**params, random_state=1).fit(texts, labels, run_dir=tmp_path, resume=True)
    assert again.strategy_details_["resumed_from_step"] == 2  # after pair training: none of it redone
    assert (again.predict_proba(texts) == first.predict_proba(texts)).all()
    with pytest.raises(ConfigError, match="different fit"):
        TransferClassifier(**params, random_state=2).fit(texts, labels, run_dir=tmp_path, resume=True)
