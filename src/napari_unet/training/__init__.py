"""The training loop: the trainer, one optimization step, the loss, the budget and schedule, kept weights, checkpoints, the job."""
