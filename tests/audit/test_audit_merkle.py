"""RFC 9162 tree hashing and proofs, against an independent naive implementation of the RFC's definitions."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bookwarden.audit import merkle


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def naive_mth(leaves: list[bytes]) -> bytes:
    """MTH exactly as §2.1.1 defines it, recursively."""
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:]))


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [naive_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, leaves[:k], complete), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


LEAVES = [sha(b"event %d" % i) for i in range(70)]
PROOF_SIZES = range(1, 41)


def flipped(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


@pytest.mark.parametrize("size", range(71))
def test_roots_match_the_rfc_definition(size):
    leaves = LEAVES[:size]
    expected = naive_mth(leaves)
    assert merkle.root(leaves) == expected
    assert merkle.Tree(leaves).root() == expected
    assert merkle.Frontier().extend(leaves).root() == expected


def test_rfc_known_values_for_the_empty_and_one_leaf_trees():
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.root([b""]).hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def test_a_frontier_extended_piecewise_gives_the_same_root_and_one_hash_per_set_bit():
    for size in range(71):
        for cut in range(0, size + 1, 7):
            first = merkle.Frontier().extend(LEAVES[:cut])
            whole = first.extend(LEAVES[cut:size])
            assert whole.size == size and len(whole.hashes) == size.bit_count()
            assert whole.root() == naive_mth(LEAVES[:size])
            for start, end, root in whole.subtrees():
                assert root == naive_mth(LEAVES[start:end])


def test_a_frontier_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="frontier"):
        merkle.Frontier(3, (bytes(32),))


def test_every_inclusion_proof_matches_the_rfc_and_verifies():
    for size in PROOF_SIZES:
        tree = merkle.Tree(LEAVES[:size])
        root = naive_mth(LEAVES[:size])
        for index in range(size):
            path = tree.inclusion_proof(index, size)
            assert path == naive_path(index, LEAVES[:size])
            assert merkle.verify_inclusion(LEAVES[index], index, size, path, root)


def test_an_inclusion_proof_fails_when_one_byte_changes():
    for size in PROOF_SIZES:
        tree = merkle.Tree(LEAVES[:size])
        root = tree.root()
        for index in range(size):
            path = tree.inclusion_proof(index, size)
            leaf = LEAVES[index]
            assert not merkle.verify_inclusion(flipped(leaf), index, size, path, root)
            assert not merkle.verify_inclusion(leaf, index, size, path, flipped(root, 31))
            for n in range(len(path)):
                assert not merkle.verify_inclusion(leaf, index, size, [*path[:n], flipped(path[n]), *path[n + 1 :]],
                                                   root)
            if size > 1:  # the same proof does not pass for another position or size
                assert not merkle.verify_inclusion(leaf, (index + 1) % size, size, path, root)
                assert not merkle.verify_inclusion(leaf, index, size, [*path, root], root)
            assert not merkle.verify_inclusion(leaf, size, size, path, root)


def test_every_consistency_proof_matches_the_rfc_and_verifies():
    for new in PROOF_SIZES:
        tree = merkle.Tree(LEAVES[:new])
        new_root = tree.root()
        for old in range(1, new + 1):
            path = tree.consistency_proof(old, new)
            if old < new:
                assert path == naive_subproof(old, LEAVES[:new], True)
            assert merkle.verify_consistency(old, new, naive_mth(LEAVES[:old]), new_root, path)


def test_a_consistency_proof_fails_when_one_byte_changes():
    for new in PROOF_SIZES:
        tree = merkle.Tree(LEAVES[:new])
        new_root = tree.root()
        for old in range(1, new):
            old_root = tree.root(old)
            path = tree.consistency_proof(old, new)
            assert not merkle.verify_consistency(old, new, flipped(old_root), new_root, path)
            assert not merkle.verify_consistency(old, new, old_root, flipped(new_root, 5), path)
            for n in range(len(path)):
                assert not merkle.verify_consistency(old, new, old_root, new_root,
                                                     [*path[:n], flipped(path[n]), *path[n + 1 :]])
            assert not merkle.verify_consistency(old, new, old_root, new_root, [])
            # A tree whose old part was rewritten is not consistent with the old root.
            forged = merkle.Tree([flipped(LEAVES[0]), *LEAVES[1:new]])
            assert not merkle.verify_consistency(old, new, old_root, forged.root(), forged.consistency_proof(old, new))


def test_trivial_consistency_cases():
    root = merkle.root(LEAVES[:5])
    assert merkle.verify_consistency(5, 5, root, root, [])
    assert not merkle.verify_consistency(5, 5, root, flipped(root), [])
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, root, [])
    assert not merkle.verify_consistency(6, 5, root, root, [])


def test_proofs_after_a_dropped_prefix_use_the_boundary_frontier():
    for boundary in range(1, 30):
        base = merkle.Frontier().extend(LEAVES[:boundary])
        for size in range(boundary, 41):
            pruned = merkle.Tree(LEAVES[boundary:size], base)
            full = merkle.Tree(LEAVES[:size])
            assert pruned.root() == full.root()
            for index in range(boundary, size):
                assert pruned.inclusion_proof(index, size) == full.inclusion_proof(index, size)
            for old in range(boundary, size + 1):
                assert pruned.consistency_proof(old, size) == full.consistency_proof(old, size)


def test_a_proof_that_needs_a_dropped_leaf_is_unavailable():
    base = merkle.Frontier().extend(LEAVES[:6])  # subtrees [0,4) and [4,6)
    pruned = merkle.Tree(LEAVES[6:10], base)
    with pytest.raises(merkle.ProofUnavailable):
        pruned.inclusion_proof(1, 10)
    with pytest.raises(merkle.ProofUnavailable):
        pruned.consistency_proof(3, 10)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=80), st.data())
def test_proofs_hold_for_arbitrary_leaves(leaves, data):
    size = len(leaves)
    tree = merkle.Tree(leaves)
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    assert merkle.verify_inclusion(leaves[index], index, size, tree.inclusion_proof(index, size), tree.root())
    assert merkle.verify_consistency(old, size, tree.root(old), tree.root(), tree.consistency_proof(old, size))
