import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

# Two cores: keep each test process to its share (two torch processes each using both cores
# stall each other badly on depthwise conv).
torch.set_num_threads(int(os.environ.get("CSN_TEST_THREADS", "1")))
