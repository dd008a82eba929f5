"""The heavy computations pages ask for, as plain functions a worker process can run (dashboard.workers).

Each takes the model itself (the dashboard's cached one: sent to a worker its weights go through shared
memory, so a worker keeps no models of its own) and plain arrays, and returns plain results. No Streamlit
here: a worker imports this module without it. dashboard.cache calls these through `workers.run`
inside its st.cache_data wrappers, so each result is computed once for all sessions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn


def model_input(image: np.ndarray, copies: int = 1) -> torch.Tensor:
    """A float (28,28) image in [0,1] as a model input (copies,1,28,28)."""
    return torch.from_numpy(np.array(image, dtype=np.float32).reshape(28, 28))[None, None].repeat(copies, 1, 1, 1)


def attribution(model: nn.Module, image: np.ndarray, method: str, target: int,
                options: tuple) -> tuple[np.ndarray, float | None]:
    """(map (28,28), convergence delta or None) of `method` for one image towards `target`."""
    from analysis import attributions
    x = model_input(image)
    if method in attributions.DELTA_METHODS:
        attr, delta = attributions.attribute_with_delta(model, x, int(target), method, **dict(options))
        return attr[0, 0].numpy(), float(delta[0])
    return attributions.attribute(model, x, int(target), method, **dict(options))[0, 0].numpy(), None


def all_classes(model: nn.Module, image: np.ndarray, method: str, options: tuple) -> np.ndarray:
    """(10,28,28): the map of `method` for one image towards each class 0..9."""
    from analysis import attributions
    maps = attributions.attribute(model, model_input(image, 10), torch.arange(10), method, **dict(options))
    return maps[:, 0].numpy()


def sanity(run_dir: str, epoch: int, model: nn.Module, image: np.ndarray, method: str, target: int,
           options: tuple) -> tuple[pd.DataFrame, bool, str]:
    """analysis.trust's randomization test (cached on disk) and its verdict (passed, sentence)."""
    from analysis import trust
    table = trust.randomization_test_cached(run_dir, epoch, image, method, int(target), model=model, **dict(options))
    passed, sentence = trust.sanity_verdict(table)
    return table, passed, sentence


def deletion(model: nn.Module, image: np.ndarray, attr: np.ndarray, target: int) -> tuple[pd.DataFrame, dict]:
    """Deletion/insertion curves of a map (analysis.trust) and their AUC summary."""
    from analysis import trust
    table = trust.deletion_insertion(model, model_input(image), torch.from_numpy(attr), int(target))
    return table, trust.deletion_summary(table)


def class_mean(run_dir: str, epoch: int, model: nn.Module, digit: int, method: str, n: int,
               options: tuple) -> np.ndarray:
    """(28,28) mean map over the first n test images of `digit` (cached on disk)."""
    from analysis.attributions import class_mean_attribution_cached
    return class_mean_attribution_cached(run_dir, epoch, digit, method, n=n, model=model, **dict(options))


def smallest_change(model: nn.Module, image: np.ndarray, target: int) -> dict:
    """analysis.counterfactual.smallest_change for one image (about a second on our CNN)."""
    from analysis.counterfactual import smallest_change as search
    return search(model, model_input(image), int(target))
