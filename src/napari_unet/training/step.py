"""One optimization step of a training run: the optimizer (SGD or Adam at the learning rate of
the schedule), the layout a 3D network is fastest in (channels last on CPUs and CUDA, as in
prediction) and mixed precision on CUDA (bfloat16 where supported, else float16 with a
gradient scaler)."""

from __future__ import annotations

from ..common.devices import fast_memory_format
from ..config import TrainConfig
from .loss import weighted_cross_entropy
from .schedule import learning_rate

__all__ = ["TrainingStep"]


class TrainingStep:
    """Forward pass, weighted loss, backward pass and optimizer step of ``model`` on one batch.

    ``optimizer`` is the torch optimizer over the trainable parameters (its state goes into
    checkpoints), ``base_lr`` the learning rate the schedule scales (:meth:`set_learning_rate`),
    ``amp_dtype`` the autocast type on CUDA (None: float32). The model is put into
    ``memory_format`` (:func:`~napari_unet.common.devices.fast_memory_format`) in place, and so
    is each batch's image.
    """

    def __init__(self, model, config: TrainConfig, device):
        import torch

        self.memory_format = fast_memory_format(model.spatial_dims, device, training=True)
        if self.memory_format is not None:
            model.to(memory_format=self.memory_format)  # in place: the optimizer's parameters stay the same objects
        self.base_lr = learning_rate(config)
        params = [p for p in model.parameters() if p.requires_grad]
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=self.base_lr, momentum=config.momentum,
                                             weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.Adam(params, lr=self.base_lr, weight_decay=config.weight_decay)
        self.amp_dtype = None
        self.scaler = None
        if device.type == "cuda" and config.mixed_precision:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if self.amp_dtype == torch.float16:
                self.scaler = torch.amp.GradScaler("cuda")

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def __call__(self, model, batch) -> float:
        """Train ``model`` on ``batch`` (a :class:`napari_unet.dataset.sampler.Batch`); returns the loss."""
        import torch

        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        image = batch.image if self.memory_format is None else batch.image.contiguous(memory_format=self.memory_format)
        if self.amp_dtype is not None:
            with torch.autocast(device_type="cuda", dtype=self.amp_dtype):
                logits = model(image)
        else:
            logits = model(image)
        loss = weighted_cross_entropy(logits, batch.target, batch.weights)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())
