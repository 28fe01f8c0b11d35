"""Using a trained model: ``predictor`` (a checkpoint's top-k for a video, clips sampled as the
paper tests) and ``saliency`` (Captum explanations over the frames)."""
