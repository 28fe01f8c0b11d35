"""Import pretrained CSN / 3D-ResNet checkpoints from other projects into our ArchSpec model.

    python -m backend.convert SRC --out OUT.pt [--model NAME] [--pool1 yes|no] ...

A conversion produces a model that computes the source model's function, or fails with an
error naming what it could not map. Every source tensor must land somewhere, and only one in
each place (``--ignore REGEX`` drops the keys it matches on purpose, mapped or not). The
architecture comes from the tensors' shapes; what tensors cannot show (pools, temporal strides,
head window, BN eps, input normalisation) comes from, in order: a flag, what the file says about
itself (mmaction2 ``meta['cfg']``, a published model's file name), or the peer's code. A fact
the peers' own published configurations set differently (pytorchvideo's stem pool and head
window, VMZ's ``use_pool1``, mmaction2's ``with_pool2``) is never guessed: without a source the
conversion stops and names the flag.
Every fact and where it came from is printed and stored in the checkpoint's ``config``.

One module per source project (``--layout``; ``auto`` detects from the key names), each a
:class:`~.records.SourceFormat` record of its key parser, the facts its code fixes, the facts
that must be asked for and its published models:

==============  ==============================================================================
pytorchvideo    ``create_csn`` / hub ``csn_r101``: ``blocks.0.conv``, ``blocks.1.res_blocks.0.
                branch2.conv_a``, ``...branch1_conv``, ``blocks.5.proj``.
mmaction2       ``Recognizer3D`` + ``ResNet3dCSN`` + ``I3DHead``: ``backbone.conv1.conv``,
                ``backbone.layer1.0.conv2.0.conv`` (ip: ``conv2.0`` 1x1x1, ``conv2.1`` depthwise),
                ``backbone.layer1.0.downsample.conv``, ``cls_head.fc_cls``.
vmz             VMZ's PyTorch release (torchvision ``VideoResNet``): ``stem.0``, ``layer1.0.
                conv1.0``, ``conv2.0`` (ip: ``conv2.0.0`` / ``conv2.0.2``), ``downsample.0``, ``fc``.
caffe2          VMZ's Caffe2 blob pickles: ``conv1_w``, ``comp_%d_conv_%d[_middle]_w``,
                ``comp_%d_spatbn_%d[_middle]_{s,b,rm,riv}``, ``shortcut_projection_%d``, ``last_out_L%d``.
==============  ==============================================================================

Files are read by :mod:`.readers` (``torch.load(..., weights_only=True)``; Caffe2 pickles with an
unpickler that builds numpy arrays only); :mod:`.core` maps the tensors; :mod:`.cli` is the
command line.
"""
from .cli import main
from .core import (FLAG_FACTS, ConversionReport, convert_checkpoint, convert_state_dict, default_classes,
                   infer_spec, map_state_dict, parse, resolve_facts)
from .formats import FORMATS, LAYOUTS, MODELS, detect_layout
from .mmaction2 import mmaction2_facts, read_config_text
from .readers import load_source
from .records import ConvertError, Fact, Key, Source, SourceFormat

__all__ = ["ConvertError", "Fact", "Key", "Source", "SourceFormat", "FORMATS", "LAYOUTS", "MODELS",
           "FLAG_FACTS", "ConversionReport", "convert_checkpoint", "convert_state_dict", "default_classes",
           "detect_layout", "infer_spec", "load_source", "map_state_dict", "mmaction2_facts", "parse",
           "read_config_text", "resolve_facts", "main"]
