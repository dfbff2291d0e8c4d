"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification.

The leaves of a chain's tree are its events' chain hashes in seq order: leaf i is event seq i + 1.
Leaf hash SHA-256(0x00 || d), node hash SHA-256(0x01 || left || right) (§2.1.1): the prefixes
keep a leaf from ever passing for a node.

A `Frontier` is the compact state of a tree of any size: the roots of the perfect subtrees of the
binary decomposition of its size (size 13 = 8 + 4 + 1: three roots, largest first). It is all a
checkpoint needs to extend its root with new leaves, so sealing costs the new events only, and
all a verifier needs to start at a checkpoint (or at a dropped segment's boundary) without the
events before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = HASH()
_sha256 = hashlib.sha256


class ProofUnavailable(LookupError):
    """A proof needs hashes of leaves that are no longer held (a dropped segment)."""


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where MTH splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_sizes(size: int) -> list[int]:
    """Sizes of the perfect subtrees of a tree of `size` leaves, largest first (its set bits)."""
    return [1 << bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1]


@dataclass(frozen=True)
class Frontier:
    """The roots of the perfect subtrees of a tree of `size` leaves, largest (leftmost) first."""

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError(
                f"a tree of {self.size} leaves has {self.size.bit_count()} frontier hashes, not {len(self.hashes)}"
            )
        if any(len(h) != 32 for h in self.hashes):
            raise ValueError("frontier hashes are 32 bytes")

    def root(self) -> bytes:
        """MTH of the tree: fold the subtree roots from the right (each split puts the largest left)."""
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root

    def subtrees(self) -> list[tuple[int, int, bytes]]:
        """(first leaf, end leaf, root) of each perfect subtree, left to right."""
        spans, start = [], 0
        for width, root in zip(subtree_sizes(self.size), self.hashes, strict=True):
            spans.append((start, start + width, root))
            start += width
        return spans

    def extend(self, leaves: Iterable[bytes]) -> Frontier:
        builder = TreeBuilder(self)
        for data in leaves:
            builder.append(data)
        return builder.frontier()


class TreeBuilder:
    """A frontier that grows leaf by leaf: on average one node hash per leaf besides its leaf hash."""

    __slots__ = ("_stack", "size")

    def __init__(self, start: Frontier | None = None) -> None:
        start = start or Frontier()
        self._stack = list(start.hashes)
        self.size = start.size

    def append(self, data: bytes) -> None:
        stack = self._stack
        node = _sha256(b"\x00" + data).digest()
        size = self.size
        # Each trailing 1 bit of the old size is a perfect subtree the new leaf completes.
        while size & 1:
            node = _sha256(b"\x01" + stack.pop() + node).digest()
            size >>= 1
        stack.append(node)
        self.size += 1

    def frontier(self) -> Frontier:
        return Frontier(self.size, tuple(self._stack))

    def root(self) -> bytes:
        return self.frontier().root()


def root(leaves: Iterable[bytes]) -> bytes:
    """MTH(D[n]) of the leaf data `leaves`."""
    return Frontier().extend(leaves).root()


class Tree:
    """Subtree hashes of a log whose leaves before `base.size` are known only through `base`.

    A chain whose oldest segment was dropped still proves inclusion and consistency for everything
    after the drop: every node those proofs need over the dropped part is one of the boundary
    checkpoint's frontier roots.
    """

    def __init__(self, leaves: Sequence[bytes], base: Frontier | None = None) -> None:
        self.base = base or Frontier()
        self.leaves = leaves
        self.size = self.base.size + len(leaves)
        self._known = {(start, end): h for start, end, h in self.base.subtrees()}

    def hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end])."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"no leaves {start}..{end} in a tree of {self.size}")
        if start == end:
            return EMPTY_ROOT
        known = self._known.get((start, end))
        if known is not None:
            return known
        offset = self.base.size
        if start >= offset:
            return root(self.leaves[start - offset : end - offset])
        if end - start == 1:
            raise ProofUnavailable(f"leaf {start} belongs to a dropped segment (events up to seq {offset})")
        k = split(end - start)
        return node_hash(self.hash(start, start + k), self.hash(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        return self.hash(0, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) (§2.1.3.1): sibling hashes from the leaf up."""
        if not 0 <= index < size <= self.size:
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        return self._path(index, 0, size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        if end - start == 1:
            return []
        k = split(end - start)
        if index < start + k:
            return [*self._path(index, start, start + k), self.hash(start + k, end)]
        return [*self._path(index, start + k, end), self.hash(start, start + k)]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """PROOF(old, D[new]) (§2.1.4.1); empty when old is 0 or old == new."""
        if not 0 <= old <= new <= self.size:
            raise ValueError(f"no consistency proof from {old} to {new} in a tree of {self.size}")
        if old in (0, new):
            return []
        return self._subproof(old, 0, new, True)

    def _subproof(self, old: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if old == n:
            return [] if complete else [self.hash(start, end)]
        k = split(n)
        if old <= k:
            return [*self._subproof(old, start, start + k, complete), self.hash(start + k, end)]
        return [*self._subproof(old - k, start + k, end, False), self.hash(start, start + k)]


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root_hash: bytes) -> bool:
    """§2.1.3.2: does `path` prove leaf data `leaf` at `index` in the tree of `size` with `root_hash`?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]) -> bool:
    """§2.1.4.2: does `path` prove the tree of `old` with `old_root` a prefix of `new` with `new_root`?"""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not path and old_root == new_root
    if old == 0:
        return not path  # the empty tree is a prefix of every tree
    if not path:
        return False
    path = list(path)
    if old & (old - 1) == 0:  # old is a power of two: its root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
