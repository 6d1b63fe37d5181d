"""The captioner's encoder, decoder and checkpoint, on tiny random models (no pretrained weights, no ../shared).

The tokenizer fixture is conftest's, trained on the sonnets.
"""

import pytest
import torch

from genseq.errors import CheckpointError, ConfigError
from genseq.generation import GenerationConfig, generate_ids

from genseq_captioning.captioner import Captioner, load_captioner
from genseq_captioning.decoder import BoundDecoder, CaptionDecoder, DecoderConfig
from genseq_captioning.encoder import (
    EfficientNetLite0,
    EncoderConfig,
    ImageEncoder,
    convert_pypi_state_dict,
    load_pretrained,
)

TINY = dict(feature_size=16, embedding_size=12, hidden_size=20, attention_size=10, dropout=0.0)


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return CaptionDecoder(DecoderConfig(vocab_size=40, feature_channels=8, **TINY)).eval()


@pytest.fixture(scope="module")
def features():
    return torch.randn(3, 8, 2, 3, generator=torch.Generator().manual_seed(1))  # (B, C, h, w): N = 6 locations


def test_a_generic_torchvision_backbone_uses_its_feature_stages():
    encoder = ImageEncoder(EncoderConfig(name="squeezenet1_0", image_size=64))
    assert encoder.channels == 512 and len(encoder.frozen) == len(encoder.backbone.features)


def test_efficientnet_lite0_gives_a_1280_channel_map_at_a_32nd_of_the_size():
    encoder = ImageEncoder(EncoderConfig(image_size=64)).eval()
    assert encoder.channels == 1280
    assert encoder(torch.randn(2, 3, 64, 96)).shape == (2, 1280, 2, 3)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_a_torchvision_backbone_by_name_with_its_last_stage_trainable():
    encoder = ImageEncoder(EncoderConfig(name="resnet18", image_size=64, trainable_stages=1))
    assert encoder.channels == 512 and encoder.backbone.fc is None
    assert encoder(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    trainable = {name.split(".")[0] for name, p in encoder.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"layer4"}


def test_unknown_backbone_and_too_many_trainable_stages_are_config_errors():
    with pytest.raises(ConfigError, match="unknown encoder"):
        ImageEncoder(EncoderConfig(name="no_such_net"))
    with pytest.raises(ConfigError, match="18 stages"):
        ImageEncoder(EncoderConfig(trainable_stages=19))


def test_pypi_lite0_keys_convert_to_this_definition():
    ours = EfficientNetLite0(num_classes=1000).state_dict()
    inverse = {
        "stem.conv.": "_conv_stem.", "stem.bn.": "_bn0.", "head.conv.": "_conv_head.", "head.bn.": "_bn1.",
        "classifier.": "_fc.", ".expand.conv.": "._expand_conv.", ".expand.bn.": "._bn0.",
        ".depthwise.conv.": "._depthwise_conv.", ".depthwise.bn.": "._bn1.", ".project.conv.": "._project_conv.",
        ".project.bn.": "._bn2.", "blocks.": "_blocks.",
    }
    pypi = {}
    for key, tensor in ours.items():
        for new, old in inverse.items():
            key = key.replace(new, old)
        pypi[key] = tensor
    assert "_blocks.1._expand_conv.weight" in pypi and "_blocks.0._bn1.running_var" in pypi
    converted = convert_pypi_state_dict(pypi, keep_classifier=True)
    assert converted.keys() == ours.keys()
    assert "classifier.weight" not in convert_pypi_state_dict(pypi)
    with pytest.raises(CheckpointError):
        convert_pypi_state_dict({"something.else": torch.zeros(1)})


def test_pretrained_weights_from_a_file(tmp_path):
    from safetensors.torch import save_file

    source = ImageEncoder(EncoderConfig(image_size=64))
    with torch.no_grad():
        for p in source.backbone.parameters():
            p.normal_()
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(tmp_path / "w.safetensors"))
    target = ImageEncoder(EncoderConfig(image_size=64))
    load_pretrained(target, str(tmp_path / "w.safetensors"))
    assert torch.equal(target.backbone.stem.conv.weight, source.backbone.stem.conv.weight)
    with pytest.raises(ConfigError, match="do not exist"):
        load_pretrained(target, str(tmp_path / "missing.pth"))


def test_decoder_shapes_and_attention_weights_sum_to_one(decoder, features):
    inputs = torch.randint(4, 40, (3, 5))
    logits, alphas = decoder(features, inputs)
    assert logits.shape == (3, 5, 40) and alphas.shape == (3, 5, 6)
    assert torch.allclose(alphas.sum(-1), torch.ones(3, 5), atol=1e-6)
    assert (alphas >= 0).all()


def test_the_fused_step_gives_the_teacher_forced_outputs(decoder, features):
    inputs = torch.randint(4, 40, (3, 6))
    logits, _ = decoder(features, inputs)
    hidden, _, state = decoder.run(inputs[:, :1], decoder.initial_state(features))
    stepped, step = [decoder.logits(hidden[:, 0])], decoder.stepper()
    for t in range(1, 6):
        out, state = step(inputs[:, t], state)
        stepped.append(out)
    assert torch.allclose(torch.stack(stepped, 1), logits, atol=1e-5)


def test_the_fused_step_broadcasts_one_row_of_image_features_over_its_beams(decoder, features):
    h, c, annotations, keys = decoder.initial_state(features)
    rows = torch.arange(3).repeat_interleave(2)  # two beams per image
    h, c = torch.randn(1, 6, 20), torch.randn(1, 6, 20)
    ids, step = torch.randint(4, 40, (6,)), decoder.stepper()
    shared, _ = step(ids, (h, c, annotations, keys))
    repeated, _ = step(ids, (h, c, annotations[:, rows], keys[:, rows]))
    assert torch.allclose(shared, repeated, atol=1e-6)


def test_the_start_word_through_the_fused_step_matches_the_teacher_forced_pass(decoder, features):
    bos = torch.full((3, 1), 2)
    with torch.inference_mode():
        fused, fused_state = BoundDecoder(decoder, features).encode(bos)
    hidden, _, state = decoder.run(bos, decoder.initial_state(features))
    assert torch.allclose(fused, hidden, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fused_state, state))


class PerBeamFeatures(BoundDecoder):
    prompt_state = ()  # the image features repeated on every beam's row, reordered with the beams


def test_beam_search_keeping_image_features_once_per_image_finds_the_same_captions(decoder, features):
    config = GenerationConfig(num_beams=3, num_return_sequences=3, max_new_tokens=8, early_stopping=False)
    once = generate_ids(BoundDecoder(decoder, features), [[]] * 3, config, 3, start_id=2)
    per_beam = generate_ids(PerBeamFeatures(decoder, features), [[]] * 3, config, 3, start_id=2)
    assert [[s.tokens for s in r] for r in once] == [[s.tokens for s in r] for r in per_beam]
    assert [s.score for r in once for s in r] == pytest.approx([s.score for r in per_beam for s in r], abs=1e-5)


def test_beam_search_with_one_beam_is_greedy(decoder, features):
    from genseq.generation import beam_search

    bound, prompts = BoundDecoder(decoder, features), [[] for _ in range(3)]
    greedy = generate_ids(bound, prompts, GenerationConfig(temperature=0.0, max_new_tokens=7), 3, start_id=2)
    one_beam = beam_search(bound, prompts, GenerationConfig(num_beams=1, max_new_tokens=7), 3, start_id=2)
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in one_beam]
    assert [g[0].logprob for g in greedy] == pytest.approx([b[0].logprob for b in one_beam], abs=1e-5)


def test_images_in_a_batch_decode_as_they_would_alone(decoder, features):
    config = GenerationConfig(num_beams=3, num_return_sequences=3, max_new_tokens=6)
    together = generate_ids(BoundDecoder(decoder, features), [[]] * 3, config, 3, start_id=2)
    alone = generate_ids(BoundDecoder(decoder, features[1:2]), [[]], config, 3, start_id=2)
    assert [s.tokens for s in together[1]] == [s.tokens for s in alone[0]]
    assert [s.score for s in together[1]] == sorted([s.score for s in together[1]], reverse=True)


def test_show_and_tell_variant_has_no_attention(features):
    decoder = CaptionDecoder(DecoderConfig(vocab_size=40, feature_channels=8, attention=False, **TINY)).eval()
    logits, alphas = decoder(features, torch.randint(4, 40, (3, 4)))
    assert logits.shape == (3, 4, 40) and alphas.shape == (3, 4, 0)
    assert not hasattr(decoder, "score")
    generated = generate_ids(BoundDecoder(decoder, features), [[]] * 3, GenerationConfig(temperature=0.0, max_new_tokens=4), 3)
    assert len(generated) == 3


def test_checkpoint_round_trip_stores_the_frozen_encoder_in_float16(tmp_path, tokenizer):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    captioner = Captioner.create(EncoderConfig(image_size=64), tokenizer, **TINY).eval()
    captioner.save(tmp_path / "model")
    stored = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert stored["encoder.backbone.stem.conv.weight"].dtype == torch.float16
    assert stored["decoder.output.weight"].dtype == torch.float32
    loaded = load_captioner(tmp_path / "model")
    pixels = torch.randn(2, 3, 64, 64)
    features = loaded.encode_images(pixels)
    assert features.shape == (2, 1280, 2, 2)
    config = GenerationConfig(temperature=0.0, max_new_tokens=5)
    assert [c[0].tokens for c in loaded.generate(features, config)] == [
        c[0].tokens for c in captioner.generate(captioner.encode_images(pixels), config)
    ]


def test_attention_of_generated_captions(tokenizer):
    torch.manual_seed(0)
    captioner = Captioner.create(EncoderConfig(image_size=64), tokenizer, **TINY).eval()
    features = captioner.encode_images(torch.randn(2, 3, 64, 64))
    captions = captioner.generate(features, GenerationConfig(temperature=0.0, max_new_tokens=6))
    weights = captioner.attention(features, [c[0].tokens for c in captions])
    for caption, grid in zip(captions, weights):
        assert grid.shape == (len(caption[0].tokens), 2, 2)
        assert torch.allclose(grid.sum((1, 2)), torch.ones(len(caption[0].tokens)), atol=1e-5)


def test_a_checkpoint_of_another_kind_is_refused(tmp_path, trained_run):
    with pytest.raises(CheckpointError, match="'lm' checkpoint, not 'captioner'"):
        load_captioner(trained_run)


@pytest.mark.parametrize("size, message", [(16, "at least 32 pixels, not 16"), (1025, "at most 1024 pixels, not 1025")])
def test_the_image_size_has_a_sane_range(size, message):
    with pytest.raises(ConfigError, match=f"image_size must be {message}"):
        EncoderConfig(image_size=size)
    assert EncoderConfig(image_size=32).image_size == 32 and EncoderConfig(image_size=1024).image_size == 1024


def test_a_checkpoint_asking_for_a_million_pixel_image_is_refused_before_loading(tmp_path, tokenizer):
    import json

    Captioner.create(EncoderConfig(image_size=64), tokenizer, **TINY).save(tmp_path / "model")
    path = tmp_path / "model" / "config.json"
    config = json.loads(path.read_text())
    config["model_config"]["encoder"]["image_size"] = 1_000_000
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json: image_size must be at most 1024 pixels, not 1000000"):
        load_captioner(tmp_path / "model")
