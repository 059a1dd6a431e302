"""Training patches from painted planes and stacks: the sampler and the augmentation (2D and 3D)."""
