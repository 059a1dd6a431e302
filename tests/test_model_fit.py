"""One answer to "does this model fit this data", as prediction, training and the CLI ask it."""

from __future__ import annotations

import pytest

from napari_unet import TrainConfig, UNet
from napari_unet.model.fit import channels_of, check_channels, classes_for_training


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


def test_the_training_tile_of_a_preset_whether_named_or_given_as_an_architecture():
    from napari_unet import TrainConfig, UNet
    from napari_unet.config import model_preset
    from napari_unet.model.fit import default_tile_shape, preset_of

    for name, tile in [("fast", (128, 128)), ("paper", (572, 572))]:
        architecture = model_preset(name, in_channels=3, n_classes=3)
        model = UNet.from_config(architecture)
        named = default_tile_shape(model, TrainConfig(preset=name, iterations=1))
        given = default_tile_shape(model, TrainConfig(model=architecture, iterations=1))
        assert preset_of(architecture) == name and named == given == model.valid_input_shape(tile)
    # an architecture of no preset: by depth; an explicit tile wins
    odd = UNet.from_config(model_preset("fast", base_channels=8))
    assert preset_of(odd.config) is None
    assert default_tile_shape(odd, TrainConfig(model=odd.config, iterations=1)) == odd.valid_input_shape((188, 188))
    assert default_tile_shape(odd, TrainConfig(model=odd.config, iterations=1, tile_shape=(96, 96))) == \
        odd.valid_input_shape((96, 96))


def test_a_continued_model_trains_on_the_tile_it_was_trained_on():
    from napari_unet import TrainConfig, UNet
    from napari_unet.config import model_preset
    from napari_unet.model.fit import default_tile_shape

    model = UNet.from_config(model_preset("fast"))
    model.metadata = {"tile": {"train_input_shape": [160, 160]}}
    assert default_tile_shape(model, TrainConfig(model=model.config, iterations=1)) == (160, 160)
    model.metadata = {"tile": {"train_input_shape": "garbled"}}
    assert default_tile_shape(model, TrainConfig(model=model.config, iterations=1)) == (128, 128)
