"""Train a column sheet with local co-distillation on your own images (labelled and unlabelled)
and read its settled embeddings per level as an xarray Dataset (the README's Learning section).
"""

import numpy as np
import torch

import neurosim as ns
from retina import Retina

rng = np.random.default_rng(0)
images = rng.random((400, 24, 24), dtype=np.float32)  # your images, [N, H, W] in [0, 1]
labels = rng.integers(0, 10, 400)  # their labels; only the first 200 are used
eye = Retina.foveated(n_cells=288, fov_deg=12.0, image_shape=(24, 24), pixels_per_deg=2.0)
x = torch.as_tensor(eye(images), dtype=torch.float32)
x /= x.std()
cfg = ns.ModelConfig(n_columns=36, n_levels=2, dim=16, k_cells=64, neighbour_k=4, normalize="layer")
model = ns.ColumnClassifier(ns.Model.from_retina(eye, cfg))
rule = ns.Objective(ns.ObjectiveConfig.local_codistillation(w_contrastive=1.0), total_steps=200)
labelled = {"responses": x[:200], "labels": torch.as_tensor(labels[:200])}
unlabelled = {"responses": x[200:], "labels": torch.full((200,), ns.IGNORE_LABEL)}
train = ns.TrainConfig(steps=200, batch_size=32, unlabelled_batch_size=32, lr=1e-2, grad_clip=5.0)
ns.Trainer(model, rule, labelled, train, unlabelled=unlabelled, quiet=True).fit()
ds = ns.settled_dataset(model.sheet.settle(x[:8], record=("state",)), model.sheet)
print(ds["rate"].sel(level=1).isel(time=-1).dims, ds["x_deg"].values[:3])
