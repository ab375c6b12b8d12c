"""Train a column sheet with local co-distillation on your own images (labelled and unlabelled)
and read its settled embeddings per level as an xarray Dataset (the README's Learning section).
"""

import numpy as np
import torch

from neurosim import (
    IGNORE_LABEL,
    ColumnClassifier,
    Model,
    ModelConfig,
    Objective,
    ObjectiveConfig,
    Trainer,
    TrainConfig,
    settled_dataset,
)
from retina import Retina

rng = np.random.default_rng(0)
images = rng.random((400, 24, 24), dtype=np.float32)  # your images, [N, H, W] in [0, 1]
labels = rng.integers(0, 10, 400)  # their labels; only the first 200 are used
eye = Retina.foveated(n_cells=288, fov_deg=12.0, image_shape=(24, 24), pixels_per_deg=2.0)
x = torch.as_tensor(eye(images), dtype=torch.float32)
x /= x.std()
sheet = Model.from_retina(
    eye,
    ModelConfig(
        n_columns=36, n_levels=2, dim=16, hidden=(32,), k_cells=64, neighbour_k=4, normalize="layer"
    ),
)
model = ColumnClassifier(sheet)
rule = Objective(ObjectiveConfig.local_codistillation(w_contrastive=1.0), total_steps=200)
labelled = {"responses": x[:200], "labels": torch.as_tensor(labels[:200])}
unlabelled = {"responses": x[200:], "labels": torch.full((200,), IGNORE_LABEL)}
config = TrainConfig(steps=200, batch_size=32, unlabelled_batch_size=32, lr=1e-2, grad_clip=5.0)
Trainer(model, rule, labelled, config, unlabelled=unlabelled, quiet=True).fit()
ds = settled_dataset(sheet.settle(x[:8], record=("state",)), sheet)
print(ds["rate"].sel(level=1).isel(time=-1).dims, ds["x_deg"].values[:3])
