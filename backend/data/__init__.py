"""Videos in and out: decoding (``video``), writing (``encode``), the in-memory frame cache,
datasets and their split formats (``datasets``, ``layouts`` for UCF101 / HMDB51 / SSv2), and
the Train page's preview of a dataset (``preview``)."""
