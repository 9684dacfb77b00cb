"""Counter-based random numbers: a pure function of (key, position).

Why our own: batches must be a pure function of (seed, step, micro, rank) with one
independent stream per sequence, generated for a whole micro-batch in a few vectorised
numpy calls. numpy's Generators are stateful and cost ~10 us each to create per
sequence; hashing (key, counter) with SplitMix64 (Steele et al. 2014) is stateless,
vectorised and statistically strong enough for data order and synthetic sampling.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

# Distinct domains so training and validation draws can never share a key.
TRAIN_DOMAIN, VAL_DOMAIN = 1, 2


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wraps modulo 2^64 by design)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def mix(*parts) -> np.ndarray:
    """Hash a tuple of non-negative integers / uint64 arrays (broadcast) into one uint64 key."""
    with np.errstate(over="ignore"):
        h = np.zeros((), dtype=np.uint64)
        for part in parts:
            h = splitmix64(h ^ splitmix64(np.asarray(part, dtype=np.uint64)))
        return h


def uniforms(keys: np.ndarray, n: int, stream: int) -> np.ndarray:
    """[len(keys), n] uniforms in [0, 1): position j of sequence key k, stream ``stream``."""
    with np.errstate(over="ignore"):
        counters = np.arange(n, dtype=np.uint64) + np.uint64(stream) * np.uint64(1 << 32)
        bits = splitmix64(keys.astype(np.uint64)[:, None] ^ splitmix64(counters)[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def train_sequence_keys(seed: int, step: int, micro: int, rank: int, world_size: int, micro_batch_size: int) -> np.ndarray:
    """One key per sequence of a training micro-batch.

    A sequence is named by (seed, step, slot) with slot = (micro * world_size + rank) *
    micro_batch_size + row. Over one step the slots of 2 ranks x k micro-batches are the
    same set as 1 rank x 2k micro-batches, so the global batch does not depend on how it
    is split across processes; nor does it depend on micro_batch_size.
    """
    return train_block_keys(seed, [step], micro, rank, world_size, micro_batch_size)[0]


def train_block_keys(seed: int, steps, micro: int, rank: int, world_size: int, micro_batch_size: int) -> np.ndarray:
    """[len(steps), micro_batch_size] keys: ``train_sequence_keys`` for several steps at once."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    first = (micro * world_size + rank) * micro_batch_size
    slots = np.arange(first, first + micro_batch_size, dtype=np.uint64)
    return mix(TRAIN_DOMAIN, seed, np.asarray(steps, dtype=np.uint64)[:, None], slots[None, :])


def val_sequence_keys(start: int, count: int) -> np.ndarray:
    """Keys of validation sequences start .. start+count-1 (the same for every run)."""
    return mix(VAL_DOMAIN, np.arange(start, start + count, dtype=np.uint64))
