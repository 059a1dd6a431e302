"""One answer to "does this model fit this data", as prediction, training and the CLI ask it."""

from __future__ import annotations

import pytest

from napari_unet import TrainConfig, UNet
from napari_unet.model_fit import channels_of, check_channels, classes_for_training


def test_channels_must_match_the_model():
    rgb_net = UNet(in_channels=3, depth=1, base_channels=2)
    assert channels_of((3, 10, 10), "CYX") == 3 and channels_of((5, 10, 10), "ZYX") == 1
    assert check_channels(rgb_net, (10, 10, 3), "YXC") == 3
    with pytest.raises(ValueError, match=r"'img' has 1 channel\(s\) \(no C in axes 'ZYX'\), but the model "
                                         r"expects 3 input channel\(s\); name the channel axis"):
        check_channels(rgb_net, (4, 10, 10), "ZYX", "'img'")
    with pytest.raises(ValueError, match="2 channel.*on axis C of shape"):
        check_channels(rgb_net, (2, 10, 10), "CYX")


def test_classes_of_a_new_or_continued_training():
    assert classes_for_training(TrainConfig(), in_channels=1, max_class=9) == 2
    assert classes_for_training(TrainConfig(borders=True), in_channels=1, max_class=9) == 3
    assert classes_for_training(TrainConfig(mode="classes"), in_channels=1, max_class=4) == 4
    with pytest.raises(ValueError, match="annotations use 5 classes but config.n_classes is 3"):
        classes_for_training(TrainConfig(mode="classes", n_classes=3), in_channels=1, max_class=5)
    net = UNet(depth=1, base_channels=2)
    net.metadata = {"mode": "instances"}
    assert classes_for_training(TrainConfig(), in_channels=1, max_class=2, model=net) == 2
    with pytest.raises(ValueError, match="takes 1 channel.*images have 3"):
        classes_for_training(TrainConfig(), in_channels=3, max_class=2, model=net)
    with pytest.raises(ValueError, match="trained in 'instances' mode but config.mode is 'classes'"):
        classes_for_training(TrainConfig(mode="classes"), in_channels=1, max_class=2, model=net)
    wide = UNet(n_classes=5, depth=1, base_channels=2)
    with pytest.raises(ValueError, match="instance-mode model predicts 2 or 3 classes, this one 5"):
        classes_for_training(TrainConfig(), in_channels=1, max_class=2, model=wide)
