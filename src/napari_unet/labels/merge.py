"""Global instance labels from labels computed block by block (distributed prediction).

Each block labels a *window*: its core plus a halo of context on every side, so an object
that crosses the core's border is labelled whole, as in the whole image. The block keeps its
core (:func:`block_labels`: local ids 1..n) and records, along each of the core's four faces,
the local id on the inner side and whether its window labels the pixel just outside the face
as the same object. Two blocks that share a face both saw the pixels on either side of it with
context, so for every pair of local objects that touch across the face each block votes
"same object" or not, row by row; :func:`merge_faces` joins the pairs that most votes call the
same (a union-find over the face adjacency by :func:`scipy.sparse.csgraph.connected_components`)
and numbers the merged objects 1..K over the whole stack, deterministically for a given input.

Two objects that merely touch at a face stay apart (both windows see the boundary between
them); one object cut by a face is joined, whatever the block layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping

import numpy as np

__all__ = ["FACES", "BlockGrid", "block_labels", "merge_faces"]

# the four faces of a block's core, and the face of the neighbour (+1 along Y or X) across it
FACES = ("top", "bottom", "left", "right")


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids[0] != 0:  # no background: shift so that 0 stays free
        inverse = inverse + 1
    else:
        ids = ids[1:]
    return inverse.reshape(labels.shape).astype(np.uint32), int(ids.size)


def block_labels(window: np.ndarray, core: tuple[slice, slice]) -> tuple[np.ndarray, int, dict]:
    """The core of a labelled window with local ids, and what its faces need for the merge.

    Parameters
    ----------
    window : (Y, X) int array
        Labels of the block's window (core plus halo; the halo may be missing at image borders).
    core : (slice, slice)
        The core inside the window.

    Returns
    -------
    local : (core Y, core X) uint32
        The core's objects numbered 1..n (0 background).
    n : int
    faces : dict
        For each face name in :data:`FACES`: ``(ids, same)``, the local ids along the core's
        side (0 for background) and a bool per pixel: the window labels the pixel just outside
        the core as the same (non-background) object (False where the window has no halo).

    Examples
    --------
    >>> w = np.zeros((4, 6), int); w[1:3, 1:5] = 7
    >>> local, n, faces = block_labels(w, (slice(0, 4), slice(0, 3)))
    >>> n, faces["right"][0].tolist(), faces["right"][1].tolist()
    (1, [0, 1, 1, 0], [False, True, True, False])
    """
    ys, xs = core
    inner = window[ys, xs]
    local, n = _relabel(inner)
    faces = {}
    height, width = window.shape
    for face in FACES:
        axis = 0 if face in ("top", "bottom") else 1
        sl = ys if axis == 0 else xs
        first = face in ("top", "left")
        pos = sl.start if first else sl.stop - 1
        out = pos - 1 if first else pos + 1
        ids = local[0] if face == "top" else local[-1] if face == "bottom" else local[:, 0] if face == "left" else local[:, -1]
        if not 0 <= out < (height if axis == 0 else width):
            same = np.zeros(ids.shape, bool)
        elif axis == 0:
            a, b = window[pos, xs], window[out, xs]
            same = (a == b) & (a != 0)
        else:
            a, b = window[ys, pos], window[ys, out]
            same = (a == b) & (a != 0)
        faces[face] = (ids.copy(), same)
    return local, n, faces


def _face_edges(a_face, b_face, a_offset: int, b_offset: int) -> np.ndarray:
    """(global a, global b) pairs that most of both blocks' votes call one object."""
    (a_ids, a_same), (b_ids, b_same) = a_face, b_face
    both = (a_ids > 0) & (b_ids > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    pairs = np.stack([a_ids[both].astype(np.int64), b_ids[both].astype(np.int64)], axis=1)
    votes = a_same[both].astype(np.int64) + b_same[both].astype(np.int64)
    keys, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    yes = np.bincount(inverse, weights=votes, minlength=len(keys))
    rows = np.bincount(inverse, minlength=len(keys))
    keep = keys[yes > rows]  # more than half of the 2 * rows votes
    return keep + np.array([a_offset, b_offset], np.int64)


def merge_faces(counts: Mapping[Hashable, int], faces: Mapping[Hashable, dict]) -> dict:
    """Final ids for every block's local ids: ``{key: lut}`` with ``lut[local] = global`` (uint32).

    ``counts`` and ``faces`` are keyed by ``(plane, block_y, block_x)`` (``plane`` a tuple, the
    block's position in the grid of its plane); blocks ``(p, i, j)`` and ``(p, i, j + 1)`` share a
    face, as do ``(p, i, j)`` and ``(p, i + 1, j)``. Global ids are 1..K in the order of the
    blocks' keys and their local ids.

    Examples
    --------
    >>> one = {"top": ([0], [False]), "bottom": ([0], [False]), "left": ([1], [True]), "right": ([1], [True])}
    >>> luts = merge_faces({((), 0, 0): 1, ((), 0, 1): 1}, {((), 0, 0): one, ((), 0, 1): one})
    >>> luts[((), 0, 0)].tolist(), luts[((), 0, 1)].tolist()
    ([0, 1], [0, 1])
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keys = sorted(counts)
    offsets, total = {}, 0
    for key in keys:
        offsets[key] = total
        total += int(counts[key])
    edges = [np.zeros((0, 2), np.int64)]
    for key in keys:
        plane, i, j = key
        for neighbour, mine, theirs in (((plane, i, j + 1), "right", "left"), ((plane, i + 1, j), "bottom", "top")):
            if neighbour in offsets:
                a = tuple(np.asarray(v) for v in faces[key][mine])
                b = tuple(np.asarray(v) for v in faces[neighbour][theirs])
                edges.append(_face_edges(a, b, offsets[key], offsets[neighbour]))
    edge = np.concatenate(edges) - 1  # local ids start at 1
    graph = coo_matrix((np.ones(len(edge), np.int8), (edge[:, 0], edge[:, 1])), shape=(total, total))
    _, component = connected_components(graph, directed=False)
    # number the merged objects 1..K in the order of their first (lowest) global id
    _, first = np.unique(component, return_index=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(1, len(first) + 1)
    final = rank[component] if total else np.zeros(0, np.int64)
    if final.size and final.max() > np.iinfo(np.uint32).max:
        raise ValueError(f"{final.max()} objects do not fit uint32 labels")
    luts = {}
    for key in keys:
        lut = np.zeros(int(counts[key]) + 1, np.uint32)
        lut[1:] = final[offsets[key] : offsets[key] + int(counts[key])]
        luts[key] = lut
    return luts


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of ``block`` pixels (Y, X) over every plane of a stack: keys ``(plane, i, j)``."""

    plane_shape: tuple[int, ...]
    height: int
    width: int
    block: tuple[int, int]

    @property
    def counts(self) -> tuple[int, int]:
        return -(-self.height // self.block[0]), -(-self.width // self.block[1])

    def keys(self) -> list[tuple]:
        ny, nx = self.counts
        planes = list(np.ndindex(*self.plane_shape)) if self.plane_shape else [()]
        return [(tuple(int(p) for p in plane), i, j) for plane in planes for i in range(ny) for j in range(nx)]

    def core(self, key) -> tuple[slice, slice]:
        _, i, j = key
        by, bx = self.block
        return slice(i * by, min((i + 1) * by, self.height)), slice(j * bx, min((j + 1) * bx, self.width))

    def window(self, key, halo: int) -> tuple[slice, slice]:
        ys, xs = self.core(key)
        return (slice(max(0, ys.start - halo), min(self.height, ys.stop + halo)),
                slice(max(0, xs.start - halo), min(self.width, xs.stop + halo)))

    def neighbours(self, key) -> list[tuple]:
        plane, i, j = key
        ny, nx = self.counts
        return [(plane, a, b) for a in range(max(0, i - 1), min(ny, i + 2)) for b in range(max(0, j - 1), min(nx, j + 2))]

    @staticmethod
    def name(key) -> str:
        plane, i, j = key
        return "-".join([*(f"p{p}" for p in plane), f"y{i}", f"x{j}"])
