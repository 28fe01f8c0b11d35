"""VMZ's CSN written out from VMZ's source, shrunk, for the converter tests (VMZ is not on the
package index; pytorchvideo and mmaction2 are tested with their own packages in
tests/test_convert_peers.py).

Every module name and block layout below follows facebookresearch/VMZ (commit 4cc542d):

- ``VmzNet`` is torchvision's ``VideoResNet`` as ``pt/vmz/models/utils.py::_generic_resnet``
  builds it for ``pt/vmz/models/csn.py::ir_csn_152`` / ``ip_csn_152``: ``block=Bottleneck``,
  ``conv_makers=[Conv3DDepthwise or IPConv3DDepthwise] * 4``, ``stem=BasicStem_Pool if
  use_pool1 else BasicStem``; every BatchNorm gets ``eps = 1e-3`` after construction.
- ``caffe2_blobs`` names the same weights as VMZ's Caffe2 builder does
  (``c2/lib/models/builder/video_model.py::VideoModelBuilder.add_bottleneck`` / ``add_conv`` /
  ``add_channelwise_conv``, ``c2/lib/models/r3d_model.py::create_r3d``), the mapping that
  ``utilities/model_conversion/convert_models.py::copy_bottleneck`` inverts.
"""
from __future__ import annotations

import torch
from torch import nn

BLOCKS = (2, 2, 1, 1)
PLANES = (4, 8, 16, 32)
STEM = 8
CLASSES = 10


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics (small variances, so BN eps matters); eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / max(1, m.weight[0].numel())) ** 0.5
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = 0.002 + torch.rand(c, generator=g) * 0.05
    return model.eval()


class Conv3DDepthwise(nn.Conv3d):
    """pt/vmz/models/utils.py::Conv3DDepthwise: 3x3x3, groups=planes, stride in T, H and W."""

    def __init__(self, planes: int, stride: int):
        super().__init__(planes, planes, (3, 3, 3), stride=stride, padding=1, groups=planes, bias=False)


class IPConv3DDepthwise(nn.Sequential):
    """pt/vmz/models/utils.py::IPConv3DDepthwise: 1x1x1, BN, (ReLU commented out), depthwise."""

    def __init__(self, planes: int, stride: int):
        super().__init__(nn.Conv3d(planes, planes, kernel_size=1, bias=False), nn.BatchNorm3d(planes),
                         Conv3DDepthwise(planes, stride))


class Bottleneck(nn.Module):
    """torchvision.models.video.resnet.Bottleneck (expansion 4): conv1 / conv2 / conv3 are
    Sequential(conv, BN[, ReLU]); ``downsample`` comes from VideoResNet._make_layer."""

    def __init__(self, cin: int, planes: int, stride: int, conv_maker):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(cin, planes, 1, bias=False), nn.BatchNorm3d(planes), nn.ReLU())
        self.conv2 = nn.Sequential(conv_maker(planes, stride), nn.BatchNorm3d(planes), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv3d(planes, planes * 4, 1, bias=False), nn.BatchNorm3d(planes * 4))
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != planes * 4:  # _make_layer: ds_stride = get_downsample_stride(stride)
            self.downsample = nn.Sequential(nn.Conv3d(cin, planes * 4, 1, stride=stride, bias=False),
                                            nn.BatchNorm3d(planes * 4))

    def forward(self, x):
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + res)


class VmzNet(nn.Module):
    """VideoResNet(block=Bottleneck, conv_makers=[...] * 4, layers=BLOCKS, stem=BasicStem[_Pool])."""

    def __init__(self, ip: bool = False, use_pool1: bool = True):
        super().__init__()
        stem = [nn.Conv3d(3, STEM, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(STEM), nn.ReLU()]
        if use_pool1:  # BasicStem_Pool; BasicStem has no pool
            stem.append(nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        self.stem = nn.Sequential(*stem)
        maker = IPConv3DDepthwise if ip else Conv3DDepthwise
        cin = STEM
        for i, (n, p) in enumerate(zip(BLOCKS, PLANES)):
            layers = []
            for b in range(n):
                layers.append(Bottleneck(cin, p, 2 if (i > 0 and b == 0) else 1, maker))
                cin = p * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(cin, CLASSES)
        for m in self.modules():  # _generic_resnet: "exact Caffe2 momentum for BatchNorm"
            if isinstance(m, nn.BatchNorm3d):
                m.eps, m.momentum = 1e-3, 0.9

    def forward(self, x):
        x = self.stem(x)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def caffe2_blobs(net: VmzNet) -> dict:
    """VMZ Caffe2 blob names (numpy arrays) for the weights of ``net``.

    add_bottleneck numbers the convs of block ``comp_N`` with ``comp_idx``: conv_1 (1x1x1);
    ip ('0.3d'): conv_2_middle (1x1x1) + spatbn_2_middle, then conv_2 (depthwise) + spatbn_2;
    ir ('3d-sep'): add_conv and add_channelwise_conv both count, so the depthwise is conv_3;
    then the last 1x1x1. Stem: conv1 + conv1_spatbn_relu; classifier last_out_L{classes}.
    """
    def bnb(prefix: str, m: nn.BatchNorm3d) -> dict:
        return {f"{prefix}_s": m.weight, f"{prefix}_b": m.bias, f"{prefix}_rm": m.running_mean,
                f"{prefix}_riv": m.running_var}
    out = {"conv1_w": net.stem[0].weight, **bnb("conv1_spatbn_relu", net.stem[1])}
    comp = 0
    for i in range(4):
        for blk in getattr(net, f"layer{i + 1}"):
            c = f"comp_{comp}"
            out.update({f"{c}_conv_1_w": blk.conv1[0].weight, **bnb(f"{c}_spatbn_1", blk.conv1[1])})
            if isinstance(blk.conv2[0], IPConv3DDepthwise):
                mid, bn_mid, dw = blk.conv2[0]
                out.update({f"{c}_conv_2_middle_w": mid.weight, **bnb(f"{c}_spatbn_2_middle", bn_mid),
                            f"{c}_conv_2_w": dw.weight, **bnb(f"{c}_spatbn_2", blk.conv2[1])})
                last = 3
            else:
                out.update({f"{c}_conv_3_w": blk.conv2[0].weight, **bnb(f"{c}_spatbn_3", blk.conv2[1])})
                last = 4
            out.update({f"{c}_conv_{last}_w": blk.conv3[0].weight, **bnb(f"{c}_spatbn_{last}", blk.conv3[1])})
            if blk.downsample is not None:
                out[f"shortcut_projection_{comp}_w"] = blk.downsample[0].weight
                out.update(bnb(f"shortcut_projection_{comp}_spatbn", blk.downsample[1]))
            comp += 1
    out[f"last_out_L{CLASSES}_w"] = net.fc.weight
    out[f"last_out_L{CLASSES}_b"] = net.fc.bias
    return {k: v.detach().numpy().copy() for k, v in out.items()}
