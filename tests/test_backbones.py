"""Backbone registry, the Backbone contract, and loading from local checkpoints and folders."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_image, make_texts
from headstart.backbones import BackboneInfo, create_backbone, list_backbones, register
from headstart.errors import BackboneError, ConfigError


def test_registry_lists_offline_defaults() -> None:
    names = {b.name: b for b in list_backbones()}
    for name in ("minilm", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert name in names and names[name].offline, name
    assert "tiny-bert" not in names  # test backbones are hidden unless asked for
    assert {b.name for b in list_backbones("efficientnet*")} == {f"efficientnet_lite{i}" for i in range(3)}
    assert "tiny-cnn" in {b.name for b in list_backbones("tiny*", include_test=True)}
    assert names["minilm"].to_dict()["modality"] == "text"


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(BackboneError, match=r"Did you mean 'minilm'"):
        create_backbone("minlm")
    with pytest.raises(BackboneError, match="efficientnet_lite0"):
        create_backbone("efficientnet_lite9")


def test_registering_a_taken_name_is_an_error() -> None:
    with pytest.raises(BackboneError, match="already registered"):
        register(BackboneInfo(name="minilm", factory=lambda: None, modality="text", feature_dim=1, n_params=1,
                              license="x", source="x", description="x"))


def test_unknown_timm_architecture() -> None:
    with pytest.raises(BackboneError, match="timm has no architecture"):
        create_backbone("timm:not_a_real_net")


def test_hub_model_offline_fails_fast_with_a_hint() -> None:
    started = time.perf_counter()
    with pytest.raises(BackboneError, match=r"--weights FILE\.safetensors"):
        create_backbone("timm:resnet18")
    with pytest.raises(BackboneError, match="embedded backbone"):
        create_backbone("hf:bert-base-uncased")
    assert time.perf_counter() - started < 20  # no minute-long download retries


def test_weights_file_as_backbone_name_explains_the_syntax(tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    with pytest.raises(BackboneError, match="timm:resnet18 --weights"):
        create_backbone(str(file))


def test_pickle_checkpoints_are_refused(tmp_path: Path) -> None:
    file = tmp_path / "model.pth"
    torch.save({"a": torch.zeros(1)}, file)
    with pytest.raises(BackboneError, match=r"only from \.safetensors"):
        create_backbone("timm:test_efficientnet", weights=str(file))


@pytest.mark.parametrize("name", ["tiny-cnn", "tiny-bert"])
def test_contract_shapes_and_layer_groups(name: str) -> None:
    backbone = create_backbone(name)
    rng = np.random.default_rng(0)
    items = [make_image("disc", rng), make_image("square", rng), make_image("disc", rng)] \
        if backbone.spec.modality == "image" else make_texts(2)[0][:3]
    with torch.inference_mode():
        feats = backbone.forward_features(backbone.preprocess(items))
    assert feats.shape == (3, backbone.spec.feature_dim)
    assert torch.isfinite(feats).all()
    groups = backbone.layer_groups()
    assert len(groups) >= 3
    grouped = [n for g in groups for n in g.param_names]
    assert len(grouped) == len(set(grouped)), "a parameter is in two groups"
    params = dict(backbone.named_parameters())
    assert set(grouped) <= set(params)
    # Input-to-output order: the first group holds the stem/embeddings.
    assert any(k in groups[0].param_names[0] for k in ("conv_stem", "embeddings"))


def test_every_feature_path_parameter_is_in_a_group_and_gets_a_gradient() -> None:
    for name in ("tiny-cnn", "tiny-bert"):
        backbone = create_backbone(name).train()
        rng = np.random.default_rng(0)
        items = [make_image("disc", rng) for _ in range(2)] if name == "tiny-cnn" else ["abc def", "xyz"]
        backbone.forward_features(backbone.preprocess(items)).pow(2).sum().backward()
        grouped = {n for g in backbone.layer_groups() for n in g.param_names}
        with_grad = {n for n, p in backbone.named_parameters() if p.grad is not None}
        assert grouped == with_grad, name


def test_weights_hash_and_identity_track_weights_and_preprocessing() -> None:
    a, b = create_backbone("tiny-bert", seed=0), create_backbone("tiny-bert", seed=0)
    assert a.weights_sha256() == b.weights_sha256()
    assert create_backbone("tiny-bert", seed=1).weights_sha256() != a.weights_sha256()
    assert create_backbone("tiny-bert", max_length=32).identity() != a.identity()
    with torch.no_grad():
        next(b.parameters())[0, 0] += 1e-3
    assert a.weights_sha256() != b.weights_sha256()


def test_mean_pooling_ignores_padding() -> None:
    backbone = create_backbone("tiny-bert")
    with torch.inference_mode():
        alone = backbone.forward_features(backbone.preprocess(["short text"]))
        padded = backbone.forward_features(backbone.preprocess(["short text", "a much longer text " * 5]))
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-4)


def test_text_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="pooling"):
        create_backbone("tiny-bert", pooling="max")
    with pytest.raises(ConfigError, match="exceeds"):
        create_backbone("tiny-bert", max_length=4096)


def test_timm_local_checkpoint_reproduces_the_model(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    original = create_backbone("tiny-cnn", seed=3)
    file = tmp_path / "ckpt.safetensors"
    save_file({k: v.contiguous() for k, v in original.model.state_dict().items()}, str(file))
    loaded = create_backbone("timm:test_efficientnet", weights=str(file), input_size=(3, 32, 32), crop_pct=1.0)
    assert loaded.weights_sha256() == original.weights_sha256()
    x = original.preprocess([make_image("disc", np.random.default_rng(0))])
    with torch.inference_mode():
        torch.testing.assert_close(loaded.forward_features(x), original.forward_features(x))
    assert loaded.spec.build["name"] == "timm:test_efficientnet"


def test_checkpoint_for_another_architecture_is_explained(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    file = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(file))
    with pytest.raises(BackboneError, match="does not fit"):
        create_backbone("timm:test_efficientnet", weights=str(file))


def test_local_hugging_face_folder(tmp_path: Path) -> None:
    original = create_backbone("tiny-bert", seed=5)
    folder = tmp_path / "my-encoder"
    original.model.save_pretrained(folder)
    original.tokenizer.save_pretrained(folder)
    loaded = create_backbone(str(folder), max_length=64)
    assert loaded.spec.modality == "text" and loaded.spec.offline
    batch = original.preprocess(["hello there", "general kenobi"])
    with torch.inference_mode():
        torch.testing.assert_close(loaded.forward_features(batch), original.forward_features(batch))


def test_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match=r"no config\.json"):
        create_backbone(str(tmp_path))
