"""The analysis engine: plain Python (no Streamlit) that turns a run folder into answers.

Modules (import the one you need; this package imports none of them):
    cache         on-disk cache of slow results inside a run folder (`<run>/cache/`)
    errors        confusion matrices, per-class reports, confident mistakes, suspicious labels
    overfitting   best epoch, overfitting onset, early-stopping advice, from metrics alone
    calibration   reliability diagrams and expected calibration error (ECE), per epoch
    dynamics      training dynamics: forgetting events and dataset cartography
    attributions  saliency / Integrated Gradients and friends (Captum)
    trust         how far to trust one prediction
    internals     activations, filters, layer by layer
    fragility     how predictions change under small perturbations
    preprocess    a drawn digit made to look like MNIST
"""
