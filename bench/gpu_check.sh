#!/usr/bin/env bash
# Everything backend.profile should be checked against on a GPU, in about 5 minutes:
#   bash bench/gpu_check.sh 2>&1 | tee gpu_check.txt
# 1. per-layer profiles of ir-CSN-152, ip-CSN-152, ResNet3D-152 at 32x224x224, batch 8,
#    fp32 and bf16, contiguous and channels_last_3d (12 runs, 2 timed steps each);
# 2. predicted vs measured peak memory, analytic vs saved-tensor activation bytes;
# 3. depthwise conv and ir-CSN-50 step, fast vs native depthwise, on CUDA.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 CSN_CACHE_DIR="${CSN_CACHE_DIR:-/tmp/csn-cache}"
PY="${PYTHON:-python}"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" || exit 1
for arch in ir-csn-152 ip-csn-152 resnet3d-152; do
  for dtype in fp32 bf16; do
    for layout in channels_last contiguous; do
      echo "=== $arch $dtype $layout"
      timeout 120 "$PY" -m backend.profile "$arch" --frames 32 --size 224 --batch 8 \
        --device cuda --dtype "$dtype" --layout "$layout" --repeats 2 --no-compare \
        | grep -v '^conv[2-5]_[0-9]*\.' || echo "FAILED ($?)"
    done
  done
done
echo "=== ratio table (fp32, channels_last, batch 8, 32x224x224)"
timeout 180 "$PY" -m backend.profile ir-csn-152 --frames 32 --size 224 --batch 8 --device cuda \
  --repeats 2 | tail -n 10 || echo "FAILED ($?)"
echo "=== memory, depthwise, step"
timeout 180 "$PY" bench/gpu_check.py || echo "FAILED ($?)"
