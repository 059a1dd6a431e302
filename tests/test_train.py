"""The training loop: loss, events, stop / best model, continue, checkpoints, input checks."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import torch

from napari_unet.config import AugmentConfig, ModelConfig, TrainConfig
from napari_unet.model.files import load_model
from napari_unet.samples import make_touching_cells
from napari_unet.training.events import TrainEvent
from napari_unet.training.job import train
from napari_unet.training.loss import weighted_cross_entropy
from napari_unet.training.trainer import Trainer

NO_AUG = AugmentConfig(enabled=False)


@pytest.fixture(scope="module")
def sample():
    image, instances, annotations = make_touching_cells((128, 128), seed=3, annotated_fraction=0.08)
    return image, instances, annotations


def tiny(**changes) -> TrainConfig:
    base = TrainConfig(preset="tiny", iterations=6, batch_size=2, validate_every=2, device="cpu", seed=0,
                       augment=NO_AUG, validation_fraction=0.2, validation_tiles=4)
    return dataclasses.replace(base, **changes)


def state_copy(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_falls_on_a_tiny_problem(sample):
    image, _, annotations = sample
    # batch norm: the 4-channel "tiny" net sits at ln 2 for a while, this one learns at once
    config = tiny(iterations=20, learning_rate=1e-2, lr_schedule="constant", validation_fraction=0.0, batch_size=2,
                  model=ModelConfig(depth=2, base_channels=8, batch_norm=True))
    result = train([image], [annotations], config=config)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])


def test_unannotated_pixels_do_not_change_the_gradient():
    torch.manual_seed(0)
    from napari_unet.model.unet import UNet

    net = UNet(depth=1, base_channels=4)
    x = torch.randn(2, 1, 44, 44)
    out_shape = net.output_shape((44, 44))
    target = torch.randint(0, 2, (2, *out_shape))
    weights = torch.rand(2, *out_shape)
    weights[:, :, : out_shape[1] // 2] = 0  # the left half is not annotated

    def grads(t):
        net.zero_grad()
        weighted_cross_entropy(net(x), t, weights).backward()
        return [p.grad.clone() for p in net.parameters()]

    g1 = grads(target)
    other = target.clone()
    other[:, :, : out_shape[1] // 2] = 1 - other[:, :, : out_shape[1] // 2]  # change only unannotated targets
    g2 = grads(other)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    # and a weight-0 pixel with an infinite loss does not poison the sum
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0, 0, 0] = float("inf")
    loss = weighted_cross_entropy(logits, torch.ones(1, 2, 2, dtype=torch.long),
                                  torch.tensor([[[0.0, 1.0], [1.0, 1.0]]]))
    assert torch.isfinite(loss)
    # nothing annotated: zero loss rather than a division by zero
    assert float(weighted_cross_entropy(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long),
                                        torch.zeros(1, 2, 2))) == 0.0


@pytest.mark.parametrize("dims", [2, 3])
def test_a_training_step_runs_in_the_layout_prediction_uses_and_computes_the_same(dims):
    """On a CPU a 3D network trains channels-last, as it predicts (1.2-1.4 times faster per step); a
    2D network in the default layout. The layout changes the speed, not the loss or the step."""
    import copy

    from napari_unet.dataset.sampler import Batch
    from napari_unet.model.unet import UNet
    from napari_unet.training.step import TrainingStep

    torch.manual_seed(0)
    cfg = ModelConfig(depth=2, base_channels=4, padding="same", batch_norm=True, spatial_dims=dims, in_channels=2)
    net = UNet.from_config(cfg)
    plain = copy.deepcopy(net)
    shape = (2, 2, 8, 16, 16) if dims == 3 else (2, 2, 32, 32)
    batch = Batch(torch.randn(shape), torch.randint(0, 2, (shape[0], *shape[2:])), torch.rand(shape[0], *shape[2:]))
    config = TrainConfig(optimizer="sgd", learning_rate=0.1, momentum=0.0)
    step = TrainingStep(net, config, torch.device("cpu"))
    layout = torch.channels_last_3d if dims == 3 else torch.contiguous_format
    convs = [m.weight for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)) and m.weight.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=layout) and w.is_contiguous() == (dims == 2) for w in convs)
    seen = []
    net.inc.register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous(memory_format=layout)))
    loss = step(net, batch)
    assert seen == [True]  # the batch too (two channels: the layouts differ)
    assert step.memory_format == (layout if dims == 3 else None)
    plain.train()
    reference = weighted_cross_entropy(plain(batch.image), batch.target, batch.weights)
    reference.backward()
    torch.optim.SGD(plain.parameters(), lr=0.1).step()
    assert loss == pytest.approx(float(reference.detach()), rel=1e-5)
    for a, b in zip(net.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_events_metadata_and_prediction(sample):
    image, _, annotations = sample
    trainer = Trainer([image], [annotations], config=tiny(preview_every=3), preview=image[:40, :50])
    events = list(trainer.run())
    kinds = [e.kind for e in events]
    assert kinds.count("step") == 6 and kinds[-1] == "done" and "validation" in kinds
    assert all(isinstance(e, TrainEvent) and e.total_iterations == 6 for e in events)
    previews = [e for e in events if e.kind == "preview"]
    assert previews and previews[0].preview.shape == (2, 40, 50)
    np.testing.assert_allclose(previews[0].preview.sum(0), 1.0, atol=1e-4)
    step = [e for e in events if e.kind == "step"][-1]
    assert step.it_per_s > 0 and step.eta_s == pytest.approx(0.0) and step.loss > 0
    meta = trainer.model.metadata
    assert meta["mode"] == "instances" and meta["class_names"] == ["background", "cell"]
    assert meta["normalization"] == {"kind": "percentile", "low": 1.0, "high": 99.8}
    assert meta["tile"]["train_input_shape"] == list(trainer.input_shape)
    assert meta["training"]["iterations"] == 6 and meta["training"]["config"]["preset"] == "tiny"
    # the painted cells' size travels with the model: prediction scales its cell split with it
    from napari_unet.annotations.targets import painted_cell_diameter

    assert meta["cell_diameter"] == pytest.approx(painted_cell_diameter(annotations), abs=1e-3)
    assert 10 < meta["cell_diameter"] < 30
    assert len(trainer.history) == 6 and "val_loss" in trainer.history[1]
    from napari_unet.predict.tiling import predict_tiled

    probabilities = predict_tiled(trainer.model, image)  # raw image: the model normalizes it
    assert probabilities.shape == (2, 128, 128)


def test_deterministic_on_cpu(sample):
    image, _, annotations = sample
    config = tiny(iterations=4, augment=AugmentConfig())
    a = train([image], [annotations], config=config).model
    b = train([image], [annotations], config=config).model
    assert same_state(a.state_dict(), b.state_dict())


def test_continue_training_starts_from_the_given_weights(sample):
    image, _, annotations = sample
    first = train([image], [annotations], config=tiny(iterations=3)).model
    before = state_copy(first)
    trainer = Trainer([image], [annotations], config=tiny(iterations=2, learning_rate=1e-12, lr_schedule="constant",
                                                          validation_fraction=0.0), model=first)
    assert trainer.model is first
    assert same_state(state_copy(trainer.model), before)
    for _ in trainer.run():
        pass
    after = state_copy(trainer.model)
    assert all(torch.allclose(before[k].float(), after[k].float(), atol=1e-6) for k in before)
    assert trainer.model.metadata["training"]["total_iterations"] == 5
    with pytest.raises(ValueError, match="mode"):
        Trainer([image], [annotations], config=tiny(mode="classes"), model=first)


def test_stop_keeps_the_best_model(sample):
    image, _, annotations = sample
    trainer = Trainer([image], [annotations], config=tiny(iterations=1000, validate_every=1, learning_rate=5e-2))
    states = {}
    for event in trainer.run():
        if event.kind == "validation":
            states[event.iteration] = (event.val_loss, state_copy(trainer.model))
            if event.iteration >= 8:
                trainer.stop()
    assert trainer.stopped and event.kind == "done" and "stopped" in event.message
    best_it = min(states, key=lambda k: states[k][0])
    assert trainer.best_iteration == best_it
    assert same_state(state_copy(trainer.model), states[best_it][1])


@pytest.mark.parametrize("keep", ["best", "last"])
def test_which_weights_a_finished_run_keeps(sample, keep):
    image, _, annotations = sample
    expect = keep
    config = tiny(iterations=10, validate_every=1, learning_rate=5e-2, keep_model=keep)
    trainer = Trainer([image], [annotations], config=config)
    states = {}
    for event in trainer.run():
        if event.kind == "validation":
            states[event.iteration] = (event.val_loss, event.val_iou, state_copy(trainer.model))
    best_it = min(states, key=lambda k: states[k][0])
    assert best_it != 10  # the check below tells the two apart
    kept_it = 10 if expect == "last" else best_it
    assert trainer.kept == expect and trainer.kept_iteration == kept_it
    assert same_state(state_copy(trainer.model), states[kept_it][2])
    meta = trainer.model.metadata["training"]
    assert meta["kept"] == expect and meta["kept_iteration"] == kept_it
    assert meta["kept_val_loss"] == pytest.approx(states[kept_it][0])
    assert event.kind == "done" and event.val_loss == pytest.approx(states[kept_it][0])
    assert ("final model" in event.message) == (expect == "last")
    with pytest.raises(ValueError, match="keep_model"):
        tiny(keep_model="newest")


def test_closing_the_generator_early_keeps_the_best_model(sample):
    image, _, annotations = sample
    config = tiny(iterations=1000, validate_every=1, learning_rate=5e-2, keep_model="last")
    trainer = Trainer([image], [annotations], config=config)
    states = {}
    gen = trainer.run()
    for event in gen:
        if event.kind == "validation":
            states[event.iteration] = (event.val_loss, state_copy(trainer.model))
            if event.iteration >= 8:
                break
    gen.close()
    best_it = min(states, key=lambda k: states[k][0])
    assert trainer.kept == "best" and trainer.best_iteration == best_it
    assert same_state(state_copy(trainer.model), states[best_it][1])


def test_stop_from_another_thread_is_quick(sample):
    image, _, annotations = sample
    trainer = Trainer([image], [annotations], config=tiny(iterations=None, time_limit_s=60))
    started = threading.Event()
    done_at = []

    def consume():
        for event in trainer.run():
            started.set()
        done_at.append(time.perf_counter())

    thread = threading.Thread(target=consume)
    thread.start()
    assert started.wait(30)
    at_stop = trainer.iteration
    trainer.stop()
    thread.join(60)
    assert not thread.is_alive() and done_at
    assert trainer.iteration - at_stop <= 1  # ends at the next iteration, not at the time limit
    assert trainer.stopped and not trainer.model.training


def test_checkpoint_and_resume(sample, tmp_path):
    image, _, annotations = sample
    config = tiny(iterations=4, checkpoint_dir=str(tmp_path), checkpoint_every_s=1e-3, optimizer="adam")
    trainer = Trainer([image], [annotations], config=config)
    events = list(trainer.run())
    assert any(e.kind == "checkpoint" for e in events)
    path = tmp_path / "checkpoint.unet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.unet"]  # no temporary leftovers
    assert load_model(path).config == trainer.model.config  # a checkpoint is also a model file

    resumed = Trainer.resume(path, [image], [annotations], config=dataclasses.replace(config, iterations=7))
    assert resumed.iteration == 4 and len(resumed.history) == 4
    assert resumed.best_iteration == trainer.best_iteration
    a, b = trainer.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(a[k]["exp_avg"], b[k]["exp_avg"]) for k in a)
    last = list(resumed.run())[-1]
    assert last.iteration == 7 and resumed.model.metadata["training"]["iterations"] == 7

    plain = tmp_path / "plain.unet"
    from napari_unet.model.files import save_model

    save_model(trainer.model, plain)
    with pytest.raises(ValueError, match="without training state"):
        Trainer.resume(plain, [image], [annotations])


def test_set_annotations_swaps_in_fresh_strokes(sample):
    image, instances, annotations = sample
    trainer = Trainer([image], [annotations], config=tiny(iterations=4, validation_fraction=0.0))
    run = trainer.run()
    next(run)
    more = annotations.copy()
    more[:10, :10] = 1  # more background painted
    trainer.set_annotations(0, more)
    for _ in run:
        pass
    from napari_unet.annotations.targets import cell_ring, insert_gaps

    # the new strokes, plus the one-pixel background ring that the painted cells imply
    assert trainer.sampler.n_annotated == int((more > 0).sum() + cell_ring(insert_gaps(more), 1).sum())
    diameter = trainer.model.metadata["cell_diameter"]
    bigger = more.copy()
    for k in range(3):  # three large cells painted: the diameter follows
        bigger[5 + 40 * k:35 + 40 * k, 90:120] = int(more.max()) + 1 + k
    trainer.set_annotations(0, bigger)
    trainer._apply_pending()
    from napari_unet.annotations.targets import painted_cell_diameter

    assert trainer.model.metadata["cell_diameter"] == pytest.approx(painted_cell_diameter(bigger), abs=1e-3)
    assert trainer.model.metadata["cell_diameter"] > diameter
    with pytest.raises(ValueError, match="shape"):
        trainer.set_annotations(0, more[:-1])


def test_class_mode(sample):
    image, instances, _ = sample
    classes = np.zeros(instances.shape, np.uint8)
    classes[:20] = 1
    classes[60:70][instances[60:70] > 0] = 2
    classes[100:][instances[100:] > 0] = 3
    result = train([image], [classes], config=tiny(mode="classes", iterations=2, class_names=("bg", "a", "b")))
    assert result.model.config.n_classes == 3
    assert result.model.metadata["class_names"] == ["bg", "a", "b"]


def test_bad_inputs_fail_before_training(sample):
    image, _, annotations = sample
    config = tiny()
    with pytest.raises(ValueError, match="shape"):
        Trainer([image], [annotations[:-2]], config=config)
    with pytest.raises(ValueError, match="annotat"):
        Trainer([image], [np.zeros_like(annotations)], config=config)
    with pytest.raises(ValueError, match="background only"):
        Trainer([image], [np.where(annotations > 0, 1, 0).astype(np.uint16)], config=config)
    with pytest.raises(ValueError, match="2 image"):
        Trainer([image, image], [annotations], config=config)
    with pytest.raises(TypeError):
        Trainer([image], [annotations.astype(np.float32)], config=config)
    with pytest.raises(ValueError, match="channel"):
        rgb = np.stack([image] * 3)
        Trainer([rgb], [annotations], config=config, axes="CYX",
                model=train([image], [annotations], config=tiny(iterations=1)).model)


def test_progress_callback_and_time_limit(sample):
    image, _, annotations = sample
    calls = []
    result = train([image], [annotations], config=tiny(iterations=None, time_limit_s=1.0),
                   progress=lambda done, total: calls.append((done, total)))
    assert calls and all(total == 1 for _, total in calls)
    assert result.model.metadata["training"]["elapsed_s"] >= 1.0  # not before the limit


def test_time_limit_ends_training_by_the_trainers_clock(sample):
    image, _, annotations = sample
    trainer = Trainer([image], [annotations], config=tiny(iterations=None, time_limit_s=10.0, validate_every=1000))
    ticks = iter(range(10_000))
    trainer.clock = lambda: float(next(ticks))  # one second per reading: deterministic, no wall clock
    events = list(trainer.run())
    assert events[-1].kind == "done" and events[-1].message.startswith("time limit reached")
    assert 1 <= trainer.iteration < 10 and events[-1].elapsed_s >= 10.0


def test_intensity_range_is_the_whole_stack_normalization(sample):
    from napari_unet.model.normalization import normalization_params

    image, _, annotations = sample
    stack = np.stack([image, (image * 0.5).astype(image.dtype)])
    ann = np.stack([annotations, np.zeros_like(annotations)])  # the dim plane is not annotated
    trainer = Trainer([stack], [ann], config=tiny(iterations=2, preview_every=1, validation_fraction=0.0), axes="ZYX")
    lows, highs = trainer.intensity_range(0)
    expected = normalization_params(stack, {"kind": "percentile", "low": 1.0, "high": 99.8})
    np.testing.assert_allclose(lows, expected[0])
    np.testing.assert_allclose(highs, expected[1])
    # the preview of the dim plane is normalized with them, not with its own percentiles
    trainer.set_preview(stack[1], normalize=(lows, highs))
    previews = [e.preview for e in trainer.run() if e.kind == "preview"]
    from napari_unet.predict.tiling import predict_tiled

    again = predict_tiled(trainer.model, stack[1], normalize=(lows, highs))  # the final weights
    own = predict_tiled(trainer.model, stack[1])
    np.testing.assert_allclose(previews[-1], again, atol=1e-4)
    assert np.abs(previews[-1] - own).max() > 1e-3
    rgb = np.stack([image, image // 2, image // 3])
    trainer = Trainer([rgb], [annotations], config=tiny(iterations=1), axes="CYX")
    lows, highs = trainer.intensity_range(0)
    assert lows.shape == (3,) and highs[0] > highs[1] > highs[2]


def test_checkpoint_run_dirs_are_fresh_and_pruned(tmp_path, monkeypatch):
    from napari_unet.training.checkpoints import checkpoint_run_dir

    monkeypatch.setenv("NAPARI_UNET_CHECKPOINT_DIR", str(tmp_path / "ck"))
    runs = [checkpoint_run_dir(keep=3) for _ in range(5)]
    assert len(set(runs)) == 5 and all(r.parent == tmp_path / "ck" for r in runs)
    left = sorted(p for p in (tmp_path / "ck").iterdir())
    assert len(left) == 3 and runs[-1] in left and runs[0] not in left
    explicit = checkpoint_run_dir(tmp_path / "other")
    assert explicit.parent == tmp_path / "other" and not any(explicit.iterdir())


def test_weight_averaging_keeps_the_average_and_survives_a_checkpoint(sample, tmp_path):
    image, _, annotations = sample
    with pytest.raises(ValueError, match="ema_decay"):
        tiny(ema_decay=1.0)
    # the average of the weights along the way, by hand
    config = tiny(iterations=12, ema_decay=0.9, validation_fraction=0.0, checkpoint_dir=str(tmp_path))
    trainer = Trainer([image], [annotations], config=config)
    states = []
    step = trainer._step
    trainer._step = lambda batch: (step(batch), states.append(state_copy(trainer.model)))[0]
    list(trainer.run())
    assert len(states) == 12
    expected = {k: v.clone() for k, v in states[0].items()}
    for it, state in enumerate(states[1:], start=1):
        d = min(0.9, (1.0 + it) / (10.0 + it))
        for k, v in state.items():
            expected[k] = expected[k] * d + v * (1 - d) if v.is_floating_point() else v.clone()
    kept = trainer.model.state_dict()
    for k, v in kept.items():
        torch.testing.assert_close(v, expected[k], atol=1e-6, rtol=1e-5)
    assert not same_state(kept, states[-1])  # the average, not the last weights
    # validation scores the averaged weights, and the best averaged weights are kept
    config = tiny(iterations=8, ema_decay=0.9, checkpoint_dir=str(tmp_path))
    trainer = Trainer([image], [annotations], config=config)
    list(trainer.run())
    assert trainer.average.state is not None and trainer.best_iteration is not None
    resumed = Trainer.resume(tmp_path / "checkpoint.unet", [image], [annotations])
    assert same_state(resumed.average.state, trainer.average.state)


def test_borders_train_three_classes_and_prediction_reads_them(sample):
    from napari_unet.labels.instances import label_options, to_labels
    from napari_unet.predict.tiling import predict_tiled

    image, _, annotations = sample
    trainer = Trainer([image], [annotations], config=tiny(borders=True, ring=1))
    list(trainer.run())
    model = trainer.model
    assert model.config.n_classes == 3
    assert model.metadata["class_names"] == ["background", "cell", "cell border"]
    assert label_options(model)["border_class"] == 2
    probabilities = predict_tiled(model, image)
    assert probabilities.shape == (3, 128, 128)
    assert to_labels(probabilities, **label_options(model)).shape == (128, 128)
    # continuing keeps the model's kind, whatever the config says
    again = Trainer([image], [annotations], config=tiny(borders=False), model=model)
    assert again.n_classes == 3 and again.borders
    plain = Trainer([image], [annotations], config=tiny())
    assert plain.n_classes == 2 and "border_class" not in plain.model.metadata


def _small_cells(shape=(96, 96), size=8):
    """Background strokes and rows of touching ``size`` px squares (cells ids 2, 3, ...)."""
    ann = np.zeros(shape, np.uint16)
    ann[2:5, :] = 1
    ann[-5:-2, :] = 1
    cell = 2
    for y in (20, 50):
        for x in range(10, 10 + 4 * size, size):  # four squares side by side: touching pairs
            ann[y:y + size, x:x + size] = cell
            cell += 1
    return ann


def test_small_painted_cells_narrow_the_border_term_and_a_new_diameter_rebuilds_every_plane():
    from napari_unet.annotations.targets import make_targets, painted_cell_diameter

    rng = np.random.default_rng(0)
    images = [rng.random((96, 96)).astype(np.float32) for _ in range(2)]
    small = _small_cells()
    d = painted_cell_diameter(small)
    assert d < 10
    trainer = Trainer(images, [small, small], config=tiny(iterations=2, validation_fraction=0.0))
    assert trainer.data.sigma == pytest.approx(0.25 * d)

    def weights(ann, sigma):
        return make_targets(ann, w0=10.0, sigma=sigma, ring=1).weights

    narrow = trainer.targets_for(small).weights
    np.testing.assert_allclose(narrow, weights(small, 0.25 * d), rtol=1e-6)
    paper = weights(small, 5.0)
    # the ring of background along a row of small cells: the paper's 5 px term weighs it as the gap
    # to the cell after next (the cells are hardly wider than the term), the narrow term far less
    beside = (19, slice(10, 42))
    assert paper[beside].mean() > 2 * narrow[beside].mean()
    plain = Trainer(images, [small, small], config=tiny(iterations=2, validation_fraction=0.0, sigma_per_diameter=None))
    np.testing.assert_allclose(plain.targets_for(small).weights, paper, rtol=1e-6)

    for _ in trainer.run():
        pass
    large = np.zeros_like(small)
    large[2:5, :] = 1
    for ky in range(3):  # nine larger cells painted on image 1: the median diameter passes 20 px
        for kx in range(3):
            large[8 + 28 * ky:34 + 28 * ky, 6 + 28 * kx:32 + 28 * kx] = 2 + 3 * ky + kx
    trainer.set_annotations(1, large)
    trainer._apply_pending()
    assert painted_cell_diameter([small, large]) > 20 and trainer.data.sigma == 5.0
    # image 0 was not repainted, yet its targets follow the new width
    np.testing.assert_allclose(trainer.sampler.targets[0].weights, weights(small, 5.0), rtol=1e-6)


def test_durations_are_read_as_people_write_them_and_nonsense_is_refused():
    from napari_unet.common.progress import parse_duration

    assert parse_duration("3 min 20 s") == 200.0 and parse_duration("90s") == 90.0
    assert parse_duration("90", bare_unit=1.0) == 90.0
    for text in ("soon", "1:xx", "-3", "5 parsecs", "1:2:3:4"):
        with pytest.raises(ValueError, match="duration|unit"):
            parse_duration(text)


def test_the_iterations_behind_the_kept_weights_and_the_warning_when_too_few():
    from napari_unet.model.metadata import MIN_TRAINED_ITERATIONS, trained_iterations, undertrained_warning

    class Model:
        metadata = {}

    model = Model()
    assert trained_iterations(model) is None and undertrained_warning(model) is None
    model.metadata = {"training": {"iterations": 50, "total_iterations": 50, "kept_iteration": 50}}
    assert trained_iterations(model) == 50 and "only 50 iteration" in undertrained_warning(model)
    # a longer run whose validation kept early weights says so, not "trained only 50"
    model.metadata = {"training": {"iterations": 110, "total_iterations": 110, "kept_iteration": 50}}
    warning = undertrained_warning(model)
    assert trained_iterations(model) == 50 and "iteration 50 of the 110" in warning and "only" not in warning
    # continued: the earlier runs count
    model.metadata = {"training": {"iterations": 110, "total_iterations": 410, "kept_iteration": 50}}
    assert trained_iterations(model) == 350 >= MIN_TRAINED_ITERATIONS and undertrained_warning(model) is None
