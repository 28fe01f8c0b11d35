"""Small re-implementations of other projects' CSN modules, with their exact state-dict key
layouts, used to check that ``backend.convert`` computes the same function.

Written from the public code's structure (torchvision VideoResNet as used by VMZ, mmaction2
ResNet3dCSN, pytorchvideo create_csn); depths and widths are shrunk.
"""
from __future__ import annotations

import torch
from torch import nn

BLOCKS = (2, 2, 1, 1)
PLANES = (4, 8, 16, 32)
STEM = 8
CLASSES = 10


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / max(1, m.weight[0].numel())) ** 0.5
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
        elif isinstance(m, nn.BatchNorm3d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = 0.002 + torch.rand(c, generator=g) * 0.05  # small: eps matters
    return model.eval()


def bn(c: int, eps: float) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(c, eps=eps)


# --- VMZ PyTorch release: torchvision VideoResNet with Conv3DDepthwise / IPConv3DDepthwise ---

class VmzBottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, ip: bool, eps: float):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(cin, planes, 1, bias=False), bn(planes, eps), nn.ReLU())
        dw = nn.Conv3d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        if ip:  # IPConv3DDepthwise: 1x1x1, BN, (no ReLU), depthwise
            dw = nn.Sequential(nn.Conv3d(planes, planes, 1, bias=False), bn(planes, eps), dw)
        self.conv2 = nn.Sequential(dw, bn(planes, eps), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv3d(planes, planes * 4, 1, bias=False), bn(planes * 4, eps))
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv3d(cin, planes * 4, 1, stride, bias=False),
                                            bn(planes * 4, eps))
        self.relu = nn.ReLU()

    def forward(self, x):
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + res)


class VmzNet(nn.Module):
    def __init__(self, ip: bool = False, eps: float = 1e-3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, STEM, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                                  bn(STEM, eps), nn.ReLU(),
                                  nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        cin = STEM
        for i, (n, p) in enumerate(zip(BLOCKS, PLANES)):
            layers = []
            for b in range(n):
                layers.append(VmzBottleneck(cin, p, 2 if (i > 0 and b == 0) else 1, ip, eps))
                cin = p * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(cin, CLASSES)

    def forward(self, x):
        x = self.stem(x)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def caffe2_blobs(net: VmzNet) -> dict:
    """VMZ Caffe2 blob names (numpy arrays) for the weights of ``net``."""
    def bnb(prefix: str, m: nn.BatchNorm3d) -> dict:
        return {f"{prefix}_s": m.weight, f"{prefix}_b": m.bias, f"{prefix}_rm": m.running_mean,
                f"{prefix}_riv": m.running_var}
    out = {"conv1_w": net.stem[0].weight, **bnb("conv1_spatbn_relu", net.stem[1])}
    comp = 0
    for i in range(4):
        for blk in getattr(net, f"layer{i + 1}"):
            convs = [(blk.conv1[0], blk.conv1[1])]
            if isinstance(blk.conv2[0], nn.Sequential):
                convs += [(blk.conv2[0][0], blk.conv2[0][1]), (blk.conv2[0][2], blk.conv2[1])]
            else:
                convs += [(blk.conv2[0], blk.conv2[1])]
            convs += [(blk.conv3[0], blk.conv3[1])]
            for j, (c, b) in enumerate(convs, 1):
                out[f"comp_{comp}_conv_{j}_w"] = c.weight
                out.update(bnb(f"comp_{comp}_spatbn_{j}", b))
            if blk.downsample is not None:
                out[f"shortcut_projection_{comp}_w"] = blk.downsample[0].weight
                out.update(bnb(f"shortcut_projection_{comp}_spatbn", blk.downsample[1]))
            comp += 1
    out[f"last_out_L{CLASSES}_w"] = net.fc.weight
    out[f"last_out_L{CLASSES}_b"] = net.fc.bias
    return {k: v.detach().numpy().copy() for k, v in out.items()}


# --- mmaction2 ResNet3dCSN (ConvModule = conv + bn + optional act) ---------------------------

class ConvModule(nn.Module):
    def __init__(self, cin, cout, k, stride=1, pad=0, groups=1, act=True, eps=1e-3):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, k, stride, pad, groups=groups, bias=False)
        self.bn = bn(cout, eps)
        self.activate = nn.ReLU() if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.activate(x) if self.activate is not None else x


class MmaBottleneck(nn.Module):
    def __init__(self, cin, planes, ts, ss, ip, eps):
        super().__init__()
        self.conv1 = ConvModule(cin, planes, 1, eps=eps)
        conv2 = [ConvModule(planes, planes, 1, act=False, eps=eps)] if ip else []
        conv2.append(ConvModule(planes, planes, 3, (ts, ss, ss), 1, groups=planes, eps=eps))
        self.conv2 = nn.Sequential(*conv2)
        self.conv3 = ConvModule(planes, planes * 4, 1, act=False, eps=eps)
        self.downsample = None
        if ss != 1 or cin != planes * 4:
            self.downsample = ConvModule(cin, planes * 4, 1, (ts, ss, ss), act=False, eps=eps)
        self.relu = nn.ReLU()

    def forward(self, x):
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + res)


class MmaBackbone(nn.Module):
    def __init__(self, ip, eps):
        super().__init__()
        self.conv1 = ConvModule(3, STEM, (3, 7, 7), (1, 2, 2), (1, 3, 3), eps=eps)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        cin = STEM
        for i, (n, p) in enumerate(zip(BLOCKS, PLANES)):
            ts, ss = (1, 1) if i == 0 else (2, 2)
            layers = []
            for b in range(n):
                layers.append(MmaBottleneck(cin, p, ts if b == 0 else 1, ss if b == 0 else 1, ip, eps))
                cin = p * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.out = cin

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


class MmaHead(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.fc_cls = nn.Linear(cin, CLASSES)


class MmaRecognizer(nn.Module):
    def __init__(self, ip: bool = True, eps: float = 1e-3):
        super().__init__()
        self.backbone = MmaBackbone(ip, eps)
        self.cls_head = MmaHead(self.backbone.out)

    def forward(self, x):
        return self.cls_head.fc_cls(self.backbone(x).mean(dim=(2, 3, 4)))


# --- pytorchvideo create_csn ----------------------------------------------------------------

class PvBottleneck(nn.Module):
    def __init__(self, cin, inner, cout, stride):
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, 1, bias=False)
        self.norm_a, self.act_a = nn.BatchNorm3d(inner), nn.ReLU()
        self.conv_b = nn.Conv3d(inner, inner, 3, stride, 1, groups=inner, bias=False)
        self.norm_b, self.act_b = nn.BatchNorm3d(inner), nn.ReLU()
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(cout)

    def forward(self, x):
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class PvResBlock(nn.Module):
    def __init__(self, cin, inner, cout, stride):
        super().__init__()
        self.branch1_conv = self.branch1_norm = None
        if cin != cout or stride != (1, 1, 1):
            self.branch1_conv = nn.Conv3d(cin, cout, 1, stride, bias=False)
            self.branch1_norm = nn.BatchNorm3d(cout)
        self.branch2 = PvBottleneck(cin, inner, cout, stride)
        self.activation = nn.ReLU()

    def forward(self, x):
        s = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return self.activation(s + self.branch2(x))


class PvStage(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, x):
        for b in self.res_blocks:
            x = b(x)
        return x


class PvStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, STEM, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False)
        self.norm, self.activation = nn.BatchNorm3d(STEM), nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))

    def forward(self, x):
        return self.pool(self.activation(self.norm(self.conv(x))))


class PvHead(nn.Module):
    def __init__(self, cin, pool_kernel):
        super().__init__()
        self.pool = nn.AvgPool3d(pool_kernel)
        self.proj = nn.Linear(cin, CLASSES)
        self.output_pool = nn.AdaptiveAvgPool3d(1)

    def forward(self, x):
        x = self.pool(x).permute(0, 2, 3, 4, 1)
        x = self.proj(x).permute(0, 4, 1, 2, 3)
        return self.output_pool(x).flatten(1)


class PvNet(nn.Module):
    """create_csn: temporal strides (1, 2, 2, 1), spatial (1, 2, 2, 2), BN eps 1e-5."""

    def __init__(self, head_pool=(1, 1, 1)):
        super().__init__()
        blocks: list[nn.Module] = [PvStem()]
        cin = STEM
        for i, (n, p) in enumerate(zip(BLOCKS, PLANES)):
            t, s = (1, 2, 2, 1)[i], (1, 2, 2, 2)[i]
            res = []
            for b in range(n):
                res.append(PvResBlock(cin, p, p * 4, (t, s, s) if b == 0 else (1, 1, 1)))
                cin = p * 4
            blocks.append(PvStage(res))
        blocks.append(PvHead(cin, head_pool))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x
