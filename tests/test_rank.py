"""headstart rank and fit --backbone auto: candidates, the combined score, the control, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from headstart import TransferClassifier
from headstart.backbones import create_backbone
from headstart.cli.app import run
from headstart.data import load_data
from headstart.errors import ConfigError
from headstart.features import embed_batches
from headstart.transferability import rank
from headstart.transferability import ranking as rank_module
from headstart.transferability.ranking import Candidate, combine, resolve_candidates

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_candidate_lists() -> None:
    offline = resolve_candidates("offline", "image")
    assert "efficientnet_lite0" in offline and offline[-1] == "random:efficientnet_lite0"
    assert "minilm" not in offline and "tiny-cnn" not in offline
    assert resolve_candidates(" tiny-cnn, random:tiny-cnn ", "image") == ["tiny-cnn", "random:tiny-cnn"]
    with pytest.raises(ConfigError, match="twice"):
        resolve_candidates("a,a", "image")
    with pytest.raises(ConfigError, match="no candidates"):
        resolve_candidates(" , ", "image")


def test_combined_score_follows_the_scores_and_ignores_the_control() -> None:
    good = Candidate("good", scores={"linear_probe": 0.9, "knn": 0.85, "logme": 0.5, "h_score": 3.0})
    mid = Candidate("mid", scores={"linear_probe": 0.8, "knn": 0.8, "logme": 0.3, "h_score": 2.5})
    bad = Candidate("bad", scores={"linear_probe": 0.6, "knn": 0.5, "logme": 0.1, "h_score": 2.0})
    control = Candidate("random:x", control=True, scores={"linear_probe": 0.1, "knn": 0.1, "logme": -1.0,
                                                          "h_score": 0.1})
    combine([good, mid, bad, control])
    assert good.combined > mid.combined > bad.combined > control.combined
    # The control is scored on the peers' scale: its extreme values do not move theirs.
    before = good.combined
    control.scores = {"linear_probe": 0.0, "knn": 0.0, "logme": -100.0, "h_score": 0.0}
    combine([good, mid, bad, control])
    assert good.combined == pytest.approx(before)
    # LEEP only counts when every peer has it.
    good.scores["leep"] = -0.1
    combine([good, mid, bad])
    assert good.combined == pytest.approx(before)


def test_source_head_equals_the_models_own_logits() -> None:
    backbone = create_backbone("tiny-cnn")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    import torch

    features = embed_batches(backbone, images, device=torch.device("cpu"))
    with torch.inference_mode():
        direct = backbone.source_logits(backbone.preprocess(images)).numpy()
    np.testing.assert_allclose(backbone.source_head(features), direct, atol=1e-4)
    assert create_backbone("tiny-bert").source_head(np.zeros((1, 32), np.float32)) is None


def test_rank_scores_candidates_and_reports_failures(image_folder: Path) -> None:
    report = rank(image_folder, "tiny-cnn,random:tiny-cnn,no-such-backbone-xyz", max_items=20)
    by_name = {c.name: c for c in report.candidates}
    assert report.recommended == "tiny-cnn"  # the control is never recommended
    assert not by_name["no-such-backbone-xyz"].available and by_name["no-such-backbone-xyz"].error
    assert report.candidates[-1].name == "no-such-backbone-xyz"
    cnn = by_name["tiny-cnn"]
    assert set(cnn.scores) == {"linear_probe", "knn", "logme", "h_score", "leep", "nce"}
    assert "leep" not in by_name["random:tiny-cnn"].scores  # a random network has no source task
    assert cnn.latency_ms > 0 and cnn.feature_dim == 256 and cnn.input_size == "32×32"
    assert report.data["n_scored"] == 20 and report.brute_force_estimate_seconds > 0
    json.dumps(report.to_dict())


def test_rank_never_looks_at_the_test_split(text_table: Path, tmp_path: Path) -> None:
    import pandas as pd

    df = pd.read_csv(text_table)
    df["split"] = ["train", "test"] * (len(df) // 2)
    df.to_csv(tmp_path / "s.csv", index=False)
    report = rank(tmp_path / "s.csv", "tiny-bert", text_col="text", split_col="split")
    assert report.data["n_items"] == len(df) // 2


def test_cli_rank_json_and_table(text_table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["rank", str(text_table), "--candidates", "tiny-bert,random:tiny-bert", "--json", "-q"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["format"] == "headstart-rank-v1" and out["recommended"] == "tiny-bert"
    assert [c["name"] for c in out["candidates"]] == ["tiny-bert", "random:tiny-bert"]
    code = run(["rank", str(text_table), "--candidates", "tiny-bert,random:tiny-bert", "-q"])
    text = capsys.readouterr().out
    assert code == 0 and "recommended" in text and "ranking took" in text and "(control)" in text
    code = run(["rank", str(text_table), "--candidates", "efficientnet_lite0", "-q"])
    assert code == 0 and "no recommendation" in capsys.readouterr().out  # image backbone, text data


def test_fit_backbone_auto_uses_the_ranking(text_table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rank_module, "resolve_candidates", lambda spec, modality: ["tiny-bert", "random:tiny-bert"])
    data = load_data(text_table, text_col="text")
    clf = TransferClassifier(backbone="auto", random_state=0).fit(data)
    assert clf.backbone_.spec.name == "tiny-bert"
    selection = clf.fit_info_["backbone_selection"]
    assert selection["recommended"] == "tiny-bert" and len(selection["candidates"]) == 2
    assert clf.get_params()["backbone"] == "auto"  # the parameter is left as given


@pytest.mark.slow
def test_rank_real_offline_candidates_on_silhouettes(capsys: pytest.CaptureFixture[str]) -> None:
    path = SHARED / "animal-silhouettes"
    if not path.exists():
        pytest.skip(f"{path} not found")
    report = rank(path, "offline", max_items=150)
    real = [c for c in report.candidates if c.available and not c.control]
    control = next(c for c in report.candidates if c.control)
    print("\n" + "\n".join(f"{c.name}: combined {c.combined}, {c.scores}" for c in report.candidates))
    print(report.reason, f"{report.seconds:.0f}s")
    assert {c.name for c in real} >= {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    assert report.recommended in {c.name for c in real}
    assert all("leep" in c.scores and c.scores["leep"] <= 0 for c in real)
    # Pretrained ImageNet features beat the same network with random weights on every score.
    for key in ("linear_probe", "knn", "logme"):
        assert all(c.scores[key] > control.scores[key] for c in real), key
