"""Prediction on a dask cluster (issue 15); prints the figures of benchmarks/README.md.

1. **Overhead**: the paper network on a 4096 x 4096 zarr, plain ``predict_tiled`` (one process,
   all cores) vs ``predict_distributed`` on a local cluster of 1 worker process with the same
   cores (goal: <= 1.10x); the scheduling + transfer overhead per block (ms) and as a share of the
   block's compute (goal <= 5 % at the default block of 1024). Also the scheduler's task rate
   (no-op tasks per second), which bounds large clusters.
2. **Labels**: a "fast" network trained 60 s on the synthetic sample predicts an 8192 x 8192
   ``make_touching_cells`` image in 1024 x 1024 blocks; object F1 (IoU >= 0.5) of the global
   labels against ``to_labels`` of the whole image's probabilities (goal >= 0.995), whole-image
   objects split at a block border (goal 0), and the label merge's seconds per GB of labels and
   peak memory (tracemalloc around ``merge_faces``).
3. **Scaling on paper** for a 1 TB uint16 volume, from the measured per-block compute, overhead
   and task rate: expected efficiency at 16, 64, 256 workers (goal >= 90 % at 64), the storage
   bandwidth each needs, and the block size for >= 90 % at 64 workers.

Usage::

    python benchmarks/bench_distributed.py                 # all parts (~10 min on 2 cores)
    python benchmarks/bench_distributed.py --parts 1,3 --size 2048
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

import napari_unet.cluster.distributed as dist
from napari_unet import UNet, predict_distributed, predict_tiled, to_labels
from napari_unet.labels.merge import merge_faces
from napari_unet.files.ngff import open_prediction
from napari_unet.labels.instances import label_options
from napari_unet.labels.metrics import match_instances
from napari_unet.samples import make_touching_cells

TB = 1e12
logging.getLogger("distributed").setLevel(logging.ERROR)


def _zarr_image(path: Path, image: np.ndarray, chunk: int = 1024):
    import zarr

    arr = zarr.open_array(str(path), mode="w", shape=image.shape, chunks=(chunk, chunk), dtype=image.dtype)
    arr[:] = image
    return arr


def _cluster(workers: int):
    import distributed

    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
    return distributed.Client(cluster)


def _task_rate(client, n: int = 3000) -> float:
    t0 = time.perf_counter()
    futures = client.map(int, range(n), pure=False)
    client.gather(futures)
    return n / (time.perf_counter() - t0)


def part_overhead(root: Path, size: int, block: int) -> dict:
    image = make_touching_cells((size, size), seed=11)[0]
    source = _zarr_image(root / "image.zarr", image)
    net = UNet()  # the paper's network
    net.metadata = {"normalization": {"kind": "percentile", "low": 1.0, "high": 99.8}}
    predict_tiled(net, image[:600, :600])  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    plain = predict_tiled(net, source)
    plain_s = time.perf_counter() - t0
    client = _cluster(1)
    try:
        threads = len(os.sched_getaffinity(0))
        client.run(lambda: __import__("torch").set_num_threads(threads))
        rate = _task_rate(client)
        out = root / "overhead.zarr"
        result = predict_distributed(net, str(root / "image.zarr"), out, client=client, block_shape=block, labels=False)
    finally:
        client.close()
    diff = float(np.abs(open_prediction(out)["probabilities"][...] - plain).max())
    per_block = result.block_seconds
    overhead = (result.seconds - per_block * result.computed) / result.computed
    figures = {"plain_s": plain_s, "dask_s": result.seconds, "ratio": result.seconds / plain_s, "blocks": result.computed,
               "block_s": per_block, "overhead_ms": 1e3 * overhead, "overhead_share": overhead / per_block,
               "task_rate": rate, "max_diff": diff, "mp_s": result.megapixels_per_second}
    print(f"[1] {size}x{size} paper net: predict_tiled {plain_s:.1f} s, dask 1 worker {result.seconds:.1f} s "
          f"({figures['ratio']:.3f}x; goal <= 1.10); {result.computed} blocks of {block}: compute {per_block:.2f} s/block, "
          f"overhead {figures['overhead_ms']:.0f} ms/block = {100 * figures['overhead_share']:.1f} % (goal <= 5 %); "
          f"scheduler {rate:.0f} no-op tasks/s; max |p_dask - p_tiled| {diff:.2g}")
    return figures


def _trained_model(seconds: float):
    from napari_unet import TrainConfig, train

    image, _labels, annotations = make_touching_cells((512, 512), seed=0)[:3]
    config = TrainConfig(preset="fast", time_limit_s=seconds, seed=0)
    return train([image], [annotations], config=config).model


def part_labels(root: Path, size: int, block: int, train_s: float) -> dict:
    net = _trained_model(train_s)
    image = make_touching_cells((size, size), seed=12)[0]
    _zarr_image(root / "big.zarr", image)
    merges = []

    def timed_merge(counts, faces):
        tracemalloc.start()
        t0 = time.perf_counter()
        luts = merge_faces(counts, faces)
        merges.append((time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]))
        tracemalloc.stop()
        return luts

    dist.merge_faces = timed_merge
    client = _cluster(1)
    try:
        threads = len(os.sched_getaffinity(0))
        client.run(lambda: __import__("torch").set_num_threads(threads))
        out = root / "labels.zarr"
        result = predict_distributed(net, str(root / "big.zarr"), out, client=client, block_shape=block)
    finally:
        client.close()
        dist.merge_faces = merge_faces
    arrays = open_prediction(out)
    labels = arrays["labels"][...]
    t0 = time.perf_counter()
    whole = to_labels(arrays["probabilities"][...], **label_options(net))
    whole_s = time.perf_counter() - t0
    match = match_instances(whole, labels)
    both = (whole > 0) & (labels > 0)
    pairs = np.unique(np.stack([whole[both], labels[both]]), axis=1)
    ids, counts = np.unique(pairs[0], return_counts=True)
    split = int((counts > 1).sum())
    merge_s, merge_peak = merges[0]
    gb = labels.size * 4 / 1e9
    print(f"[2] {size}x{size}, blocks {block}: {result.objects} objects, F1 vs whole-image to_labels {match['f1']:.4f} "
          f"(goal >= 0.995; {match['n_gt']} vs {match['n_pred']} objects), whole-image objects split {split} (goal 0); "
          f"dask {result.seconds:.1f} s ({result.megapixels_per_second:.2f} MP/s) vs whole-image to_labels alone {whole_s:.1f} s; "
          f"merge {merge_s:.3f} s = {merge_s / gb:.2f} s per GB of labels, peak {merge_peak / 2**20:.1f} MiB")
    return {"f1": match["f1"], "split": split, "merge_s_per_gb": merge_s / gb, "merge_peak_mib": merge_peak / 2**20}


def part_scaling(block_s: float, overhead_s: float, task_rate: float, block: int, bandwidth: float) -> None:
    """Efficiency = ideal time / modelled time; the cluster waits on the slowest of: workers
    (compute + per-task overhead), the scheduler (3 tasks per block), the shared store."""
    pixels = TB / 2  # uint16
    io_bytes = 2 + 2 * 4 + 4 + 4  # per pixel: input, 2-class float32 probabilities written + read back, labels
    print(f"[3] 1 TB uint16 ({pixels / 1e9:.0f} Gpx), assumed store bandwidth {bandwidth / 1e9:.0f} GB/s:")
    for b in (block, 2 * block, 4 * block):
        scale = (b / block) ** 2  # compute and I/O per block grow with its area, the overhead does not
        c, n = block_s * scale, pixels / b**2
        row = []
        for workers in (16, 64, 256):
            ideal = n * c / workers
            worst = max(n * (c + overhead_s) / workers, 3 * n / task_rate, pixels * io_bytes / bandwidth)
            row.append(f"{workers}: {100 * ideal / worst:.0f} % (needs {workers * b * b * io_bytes / c / 1e9:.2f} GB/s)")
        print(f"    block {b}: {n:.0f} blocks, " + ", ".join(row))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="1,2,3")
    parser.add_argument("--size", type=int, default=4096, help="image size of part 1")
    parser.add_argument("--label-size", type=int, default=8192, help="image size of part 2")
    parser.add_argument("--block", type=int, default=dist.DEFAULT_BLOCK)
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--bandwidth", type=float, default=2e9, help="assumed store bandwidth (bytes/s) for part 3")
    args = parser.parse_args(argv)
    parts = {int(p) for p in args.parts.split(",")}
    print(f"load average {os.getloadavg()[0]:.2f}, {len(os.sched_getaffinity(0))} cores", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    try:
        figures = part_overhead(root, args.size, args.block) if parts & {1, 3} else None
        if 2 in parts:
            part_labels(root, args.label_size, args.block, args.train_seconds)
        if 3 in parts:
            part_scaling(figures["block_s"], max(figures["overhead_ms"], 0) / 1e3, figures["task_rate"], args.block,
                         args.bandwidth)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
