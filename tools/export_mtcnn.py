"""Write MTCNN's three networks (P-, R- and O-net) as the ONNX files agekit ships, from facenet-pytorch's wheel.

    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fnp
    python tools/export_mtcnn.py /tmp/fnp/facenet_pytorch-2.6.0-py3-none-any.whl      # writes src/agekit/face/models/
    python tools/export_mtcnn.py WHEEL --golden                                         # prints the tests' golden numbers
    python tools/export_mtcnn.py WHEEL --reference                                      # agekit's MTCNN against the wheel's

MTCNN (Zhang, Zhang, Li and Qiao, "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", IEEE SPL 2016, Fig. 2) as facenet-pytorch re-implements it (MIT licence), with the weights that its wheel
bundles (``facenet_pytorch/data/{p,r,o}net.pt``, state dicts). Its torch and torchvision pins need not be installed:
the state dicts are read straight from the wheel with ``torch.load(weights_only=True)``, loaded into the modules below
(the same layers and names), and exported. Each graph takes raw RGB pixel values (0-255, float32, NCHW) and does
MTCNN's normalisation ``(x - 127.5) / 128`` itself. The wheel is checked against the sha256 recorded here.
Needs ``torch``, ``onnx`` and ``onnxruntime`` (``pip install 'agekit[export]'``).
"""
from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from agekit.weightfile import file_sha256

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "agekit" / "face" / "models"
WHEEL = "facenet_pytorch-2.6.0-py3-none-any.whl"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
NAMES = ("pnet", "rnet", "onet")


class Normalise(nn.Module):
    """MTCNN's input scaling: (x - 127.5) * 0.0078125."""

    def forward(self, x):
        return (x - 127.5) * 0.0078125


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 windows at stride 2; outputs (box regression, face/non-face)."""

    def __init__(self):
        super().__init__()
        self.norm = Normalise()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.prelu1(self.conv1(self.norm(x)))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refine net: 24x24 crops -> (box regression, face/non-face)."""

    def __init__(self):
        super().__init__()
        self.norm = Normalise()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(self.norm(x))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # the Caffe weights' (W, H, C) flattening order
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net: 48x48 crops -> (box regression, 5 landmarks as x1..x5, y1..y5 in box units, face/non-face)."""

    def __init__(self):
        super().__init__()
        self.norm = Normalise()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(self.norm(x))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


class SplitPReLU(nn.Module):
    """A convolution and its PReLU, ``max(y, 0) + a * min(y, 0)`` with ``y = conv(x)`` (He et al. 2015, eq. 1), as
    ``relu(conv(x)) + (-a) * relu(conv'(x))`` where ``conv'`` has the negated weights and bias, so ``conv'(x) = -y``
    to the bit. ONNX Runtime fuses each ReLU into its convolution and keeps the scale and the sum in its blocked
    layout, where a PRelu node after the first convolution left that layout and took 29 % of the O-net's time (38 %
    of the R-net's). The outputs are the same floats; the first convolution runs twice."""

    def __init__(self, conv: nn.Conv2d, prelu: nn.PReLU):
        super().__init__()
        self.pos = conv
        self.neg = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size)
        with torch.no_grad():
            self.neg.weight.copy_(-conv.weight)
            self.neg.bias.copy_(-conv.bias)
        self.register_buffer("scale", -prelu.weight.detach().clone().reshape(1, -1, 1, 1))

    def forward(self, x):
        return torch.relu(self.pos(x)) + self.scale * torch.relu(self.neg(x))


def for_onnx_runtime(net: nn.Module) -> nn.Module:
    """The shipped graph's form of a loaded network: its first convolution and PReLU as :class:`SplitPReLU` (the
    later ones gained nothing measurable that way)."""
    net.conv1, net.prelu1 = SplitPReLU(net.conv1, net.prelu1), nn.Identity()
    return net


NETS = {"pnet": PNet, "rnet": RNet, "onet": ONet}
INPUT_SIDE = {"pnet": None, "rnet": 24, "onet": 48}
OUTPUTS = {"pnet": ["reg", "prob"], "rnet": ["reg", "prob"], "onet": ["reg", "landmarks", "prob"]}


def fixed_input(name: str) -> np.ndarray:
    """The input the golden numbers are computed on: a deterministic pattern of pixel values in [0, 255]."""
    side = INPUT_SIDE[name] or 0
    h, w = (side, side) if side else (20, 26)
    n = 2 if side else 1
    i = np.arange(n * 3 * h * w, dtype=np.float64).reshape(n, 3, h, w)
    return (127.5 + 127.5 * np.sin(i * 0.37) * np.cos(i * 0.011)).astype(np.float32)


def read_wheel(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The three state dicts from the wheel (checked against WHEEL_SHA256)."""
    digest = file_sha256(path)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{path}: sha256 {digest}, expected {WHEEL_SHA256} ({WHEEL})")
    with zipfile.ZipFile(path) as z:
        return {n: torch.load(io.BytesIO(z.read(f"facenet_pytorch/data/{n}.pt")), weights_only=True) for n in NAMES}


def build(name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """Network ``name`` with the wheel's (or an ONNX file's) weights, in eval mode."""
    net = NETS[name]()
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("norm")]
    if missing or unexpected:
        raise SystemExit(f"{name}: weights do not fit (missing {missing}, unexpected {unexpected})")
    return net.eval()


def export(name: str, net: nn.Module, path: Path) -> None:
    """ONNX (opset 17): dynamic height and width for the P-net, dynamic batch for R and O."""
    x = torch.from_numpy(fixed_input(name))
    if name == "pnet":
        axes = {"image": {0: "batch", 2: "height", 3: "width"}}
        axes.update({o: {0: "batch", 2: "h", 3: "w"} for o in OUTPUTS[name]})
    else:
        axes = {"image": {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS[name]}}
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=OUTPUTS[name], dynamic_axes=axes,
                      opset_version=17, do_constant_folding=True, dynamo=False)


def reference(wheel: Path, photos: int) -> None:
    """facenet-pytorch's own ``detect_face`` (from the wheel, torchvision's ``batched_nms`` replaced by a plain one)
    against ``agekit.face.mtcnn`` on benchmark photos (``benchmarks/detector_recall.py``'s, needs ../shared)."""
    import tempfile
    import types

    sys.path.insert(0, str(ROOT))
    from benchmarks.detector_recall import AAF, UTK, Photos, iou

    from agekit.face.mtcnn import MTCNN

    def batched_nms(boxes, scores, idxs, threshold):  # torchvision.ops.batched_nms: IoU without the +1
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.long)
        b = (boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None]).double()
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        order, keep = torch.argsort(scores, descending=True, stable=True), []
        while order.numel():
            i, rest = order[0], order[1:]
            keep.append(int(i))
            w = (torch.minimum(b[i, 2], b[rest, 2]) - torch.maximum(b[i, 0], b[rest, 0])).clamp(min=0)
            h = (torch.minimum(b[i, 3], b[rest, 3]) - torch.maximum(b[i, 1], b[rest, 1])).clamp(min=0)
            order = rest[w * h / (area[i] + area[rest] - w * h) <= threshold]
        return torch.as_tensor(keep, dtype=torch.long)

    mods = {n: types.ModuleType(n) for n in ("torchvision", "torchvision.ops", "torchvision.ops.boxes",
                                               "torchvision.transforms", "torchvision.transforms.functional")}
    mods["torchvision.ops.boxes"].batched_nms = batched_nms
    sys.modules.update(mods)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        sys.path.insert(0, tmp)
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
        from facenet_pytorch.models.utils.detect_face import detect_face

        nets = PNet(), RNet(), ONet()
        ours = MTCNN()
        ph = Photos(UTK, AAF)
        conds = ["size 24", "size 40", "size 120", "size 400", "rotated +30", "lower face covered", "crowd 5",
                 "crowd 20", "All-Age-Faces"]
        ious, lm_err, same, missed = [], [], 0, 0
        for k in range(photos):
            cond = conds[k % len(conds)]
            img = ph.make(cond, k // len(conds), 0)[0]
            with torch.no_grad():
                boxes, points = detect_face(img, 20, *nets, [0.6, 0.7, 0.7], 0.709, "cpu")
            ref, ref_pts = np.asarray(boxes[0], float).reshape(-1, 5), np.asarray(points[0], float).reshape(-1, 5, 2)
            got, got_pts = ours.detect_raw(img)
            same += len(ref) == len(got)
            for r, rp in zip(ref, ref_pts):
                best = max(((iou(r, g), j) for j, g in enumerate(got)), default=(0.0, -1))
                if best[0] < 0.4:
                    missed += 1
                    continue
                ious.append(best[0])
                lm_err.append(float(np.linalg.norm(rp - got_pts[best[1]], axis=1).max() / (r[2] - r[0])))
            print(f"{cond}: reference {len(ref)} faces, agekit {len(got)}")
        print(f"{photos} photos: the same number of faces in {same}; {len(ious)} of the reference's {len(ious) + missed} "
              f"faces found at IoU >= 0.4 (median IoU {np.median(ious):.3f}, smallest {min(ious):.3f}); landmarks "
              f"apart by {np.median(lm_err):.3f} of the box side (median of each face's largest), {max(lm_err):.3f} "
              "at most")

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path, help=f"the downloaded {WHEEL}")
    ap.add_argument("--out", type=Path, default=OUT, help="folder of the ONNX files (default: agekit/face/models)")
    ap.add_argument("--golden", action="store_true", help="print the torch outputs on the fixed inputs instead")
    ap.add_argument("--reference", type=int, nargs="?", const=36, default=0, metavar="PHOTOS",
                    help="compare agekit's detector with facenet-pytorch's detect_face on PHOTOS benchmark photos")
    a = ap.parse_args(argv)
    states = read_wheel(a.wheel)
    if a.reference:
        reference(a.wheel, a.reference)
        return 0
    torch.manual_seed(0)
    for name in NAMES:
        net = build(name, states[name])
        with torch.no_grad():
            outs = net(torch.from_numpy(fixed_input(name)))
        if a.golden:
            for o, t in zip(OUTPUTS[name], outs):
                v = t.numpy().ravel()
                print(f"{name}.{o}: shape {tuple(t.shape)}, first {np.round(v[:4], 6).tolist()}, "
                      f"sum {float(v.astype(np.float64).sum()):.6f}")
            continue
        path = a.out / f"mtcnn_{name}.onnx"
        export(name, for_onnx_runtime(net), path)
        import onnxruntime as ort

        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"image": fixed_input(name)})
        err = max(float(np.abs(g - t.numpy()).max()) for g, t in zip(got, outs))
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size:,} bytes, "
              f"sha256 {file_sha256(path)}, largest difference from torch {err:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
