"""What a training run is made of, apart from its loop (``backend.train``): the torch-free
``TrainConfig`` and its flags (``config``), fine-tuning controls, the checkpoint format, the
test protocol, and the statistics, progress and reports of studies."""
