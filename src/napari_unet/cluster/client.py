"""dask.distributed clusters for prediction: start or reach one, and what each worker keeps.

:func:`connect` turns what a user gives (nothing, ``"local:4"``, ``"tcp://host:8786"``, a
``Client``) into a client. A local cluster runs **processes** (torch holds the GIL while it
computes), one per GPU on a GPU machine, else one per 4 CPU cores, each process's torch using
its share of the cores. On a worker, the model arrives once (scattered to every worker) and is
moved to the worker's device once (:func:`worker_model`); a worker on a machine with several GPUs
takes the GPU of its number.

dask.distributed is imported here only, when a cluster is asked for: the rest of napari-unet
runs without it (``pip install "napari-scribble-unet[cluster]"`` installs it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Connection", "connect", "model_digest", "source_identity", "worker_device", "worker_model", "worker_source"]

logger = logging.getLogger(__name__)

# torch threads per local CPU worker: more processes with fewer threads each scale better
_THREADS_PER_CPU_WORKER = 4
# what each worker process keeps between tasks: prepared models and opened sources
_CACHE: dict[Any, Any] = {}


@dataclass
class Connection:
    """A client and whether :func:`connect` started it (then ``close`` stops it and its cluster)."""

    client: Any
    owned: bool
    threads: int | None  # torch threads per worker (a local CPU cluster); None: leave torch's default

    def close(self) -> None:
        if not self.owned:
            return
        cluster = getattr(self.client, "cluster", None)
        # closing what is half started (Ctrl-C while the cluster starts) may fail in dask itself:
        # the interruption, not that failure, is what the user should see
        try:
            self.client.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # noqa: BLE001
            logger.debug("closing the cluster failed", exc_info=True)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError('prediction on a cluster needs dask.distributed: pip install "napari-scribble-unet[cluster]" '
                          '(or pip install "dask[distributed]")') from None
    return distributed


def _local_cluster(n_workers: int | None) -> Connection:
    import torch

    distributed = _import_distributed()
    cuda = torch.cuda.is_available()
    if n_workers is None:
        n_workers = torch.cuda.device_count() if cuda else max(1, _cpus() // _THREADS_PER_CPU_WORKER)
    threads = None if cuda else max(1, _cpus() // n_workers)
    cluster = distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    logger.info("started a local dask cluster: %d worker process(es)%s", n_workers,
                "" if threads is None else f", {threads} torch thread(s) each")
    return Connection(distributed.Client(cluster, set_as_default=False), owned=True, threads=threads)


def connect(cluster=None) -> Connection:
    """A dask client for ``cluster``.

    ``None`` or ``"local"``: a local cluster sized to the machine; ``"local:N"``: N local worker
    processes; ``"tcp://host:port"`` (or ``host:port``): an existing scheduler, e.g. one that
    dask-jobqueue started on SLURM; a ``distributed.Client``: used as is (never closed here).
    """
    distributed = _import_distributed()
    if isinstance(cluster, distributed.Client):
        return Connection(cluster, owned=False, threads=None)
    if cluster is None:
        return _local_cluster(None)
    if not isinstance(cluster, str):
        raise TypeError(f"cluster must be None, 'local', 'local:N', a scheduler address or a dask Client, "
                        f"got {type(cluster).__name__}")
    text = cluster.strip()
    if text.lower() == "local" or text.lower().startswith("local:"):
        text = text.lower()
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2]
        if count and (not count.isdigit() or int(count) < 1):
            raise ValueError(f"cluster {cluster!r}: expected local:N with N >= 1 worker processes")
        return _local_cluster(int(count) if count else None)
    address = text if "://" in text else f"tcp://{text}"
    scheme, _, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    if (scheme not in ("tcp", "tls", "ucx", "ws", "wss") or not host or any(c in host for c in " /!?#")
            or not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"cluster {cluster!r} is not local, local:N, nor a scheduler address such as "
                         "tcp://host:8786")
    if scheme == "tcp":  # a refused connection is certain at once; dask would retry it for 20 s
        import socket

        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=3).close()
        except ConnectionRefusedError:
            raise OSError(f"cannot reach the dask scheduler at {address}: nothing listens there") from None
        except OSError:
            pass  # unknown host, a slow network: dask says it, with its own timeout
    return Connection(_client_within(distributed, address, CONNECT_S), owned=True, threads=None)


#: seconds to reach a scheduler and finish dask's handshake with it
CONNECT_S = 30.0


def _client_within(distributed, address: str, seconds: float):
    """A client of the scheduler at ``address``, or OSError after ``seconds`` (a port that accepts
    connections but never answers as a scheduler would otherwise hold the run forever)."""
    import threading

    found: dict = {}

    def make():
        try:
            found["client"] = distributed.Client(address, timeout=f"{int(seconds)}s", set_as_default=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            found["error"] = exc

    thread = threading.Thread(target=make, name="napari-unet connect", daemon=True)
    thread.start()
    thread.join(seconds + 5)
    if "client" in found:
        return found["client"]
    error = found.get("error")
    if error is None:
        raise OSError(f"no dask scheduler answers at {address} (waited {seconds + 5:.0f} s)")
    if isinstance(error, (OSError, TimeoutError)):
        raise OSError(f"cannot reach the dask scheduler at {address}: {error}") from None
    raise error


def executing_keys(dask_worker) -> list[str]:
    """The keys of the tasks a worker's threads are running (cancelled ones included)."""
    state = getattr(dask_worker, "state", None)
    return [str(task.key) for task in list(getattr(state, "executing", None) or ())]


def wait_until_stopped(client, futures, timeout: float = 30.0) -> bool:
    """After ``client.cancel(futures)``: wait until no worker thread still runs one of them.

    Cancelling forgets a task, but a thread that runs it cannot be stopped and goes on writing
    (e.g. into an output that the caller is about to remove). True when none runs any more; False
    after ``timeout`` seconds, or when the workers cannot be asked."""
    keys = {str(f.key) for f in futures}
    deadline = time.monotonic() + timeout
    while keys:
        try:
            running = client.run(executing_keys)
        except Exception:  # noqa: BLE001 - a worker gone or a client closing: nothing more to ask
            return False
        if not any(k in keys for ks in running.values() for k in ks):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def model_digest(model) -> str:
    """A short hash of a model's architecture and weights (names a run; keys the worker cache)."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
    return h.hexdigest()[:16]


def worker_device(device=None):
    """The device of this worker: ``device`` when given; on a machine with several GPUs the GPU of
    the worker's number (local workers are numbered 0, 1, ...); else napari-unet's default."""
    if device is not None:
        return device
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        try:
            from distributed import get_worker

            name = str(get_worker().name)
        except (ImportError, ValueError):
            return None
        index = int(name) if name.isdigit() else int(hashlib.sha256(name.encode()).hexdigest(), 16)
        return f"cuda:{index % torch.cuda.device_count()}"
    return None


def worker_model(model, digest: str, device=None, threads: int | None = None):
    """The model ready on this worker's device (prepared once per worker and device)."""
    import torch

    from ..common.devices import select_device
    from ..predict.engine import prepare_model

    if threads:
        torch.set_num_threads(int(threads))
    dev = select_device(worker_device(device))
    key = ("model", digest, str(dev))
    net = _CACHE.get(key)
    if net is None:
        for old in [k for k in _CACHE if k[0] == "model"]:
            del _CACHE[old]  # a worker keeps the model of the current run only
        net = prepare_model(model, dev)
        net.eval()
        _CACHE[key] = net
    return net


def source_identity(data, path=None) -> str:
    """A digest that names a source: its shape and type, a sample of 64 x 64 windows of its values,
    and, for a file or folder at ``path``, the size and modification time of every file in it (a
    zarr's chunks, a TIFF; an even sample of them beyond :data:`MAX_STATS`); for a numpy array, all
    of its values; for a dask array, the name of its graph. Another image under the same path, or
    the same file rewritten anywhere, has another identity."""
    shape = tuple(int(s) for s in data.shape)
    h = hashlib.sha1(repr((shape, str(data.dtype))).encode())
    if path is None and isinstance(data, np.ndarray):  # in memory: all of it (it is sent to every worker)
        h.update(np.ascontiguousarray(data).tobytes())
        return h.hexdigest()
    if path is None and isinstance(getattr(data, "name", None), str):
        h.update(data.name.encode())  # a dask array's name is a token of its whole graph
    if path is not None:
        _hash_files(h, os.path.realpath(os.path.expanduser(str(path))))
    lead = shape[:-2]
    n_planes = int(np.prod(lead)) if lead else 1
    for k, flat in enumerate(np.linspace(0, n_planes - 1, num=min(4, n_planes)).round().astype(int)):
        plane = np.unravel_index(int(flat), lead) if lead else ()
        for fy in (0.0, 0.33, 0.66, 1.0):
            y = int(round(fy * max(0, shape[-2] - 64)))
            x = int(round(((k + fy * 3) % 4) / 3 * max(0, shape[-1] - 64)))
            window = np.asarray(data[(*plane, slice(y, y + 64), slice(x, x + 64))])
            h.update(np.ascontiguousarray(window).tobytes())
    return h.hexdigest()


#: the most files of a source whose size and time name it (beyond: every n-th, and all metadata)
MAX_STATS = 100_000


def _hash_files(h, root: str) -> None:
    """Add the size, time and inode of the files at ``root`` (a file, or a folder such as a zarr
    store) to ``h``: of all of them up to :data:`MAX_STATS`, of an even sample beyond."""
    if not os.path.isdir(root):
        entries = [root]
    else:
        entries = []
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            entries += [os.path.join(folder, name) for name in sorted(files)]
    step = max(1, -(-len(entries) // MAX_STATS))
    for k, entry in enumerate(entries):
        if k % step and not os.path.basename(entry).startswith((".z", "zarr.json")):
            continue
        stat = os.stat(entry)
        h.update(f"{os.path.relpath(entry, root)}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino};".encode())


def worker_source(source, identity: str | None = None):
    """The array a block reads: ``source`` itself, or the lazily opened zarr at a path, kept
    under the path and the ``identity`` the client found (a file rewritten under the same path
    between two runs has another identity, so it is opened again)."""
    if not isinstance(source, str):
        return source
    key = ("source", source, identity)
    if key not in _CACHE:
        from ..files.images import read_image

        _CACHE[key] = read_image(source)[0]
    return _CACHE[key]
