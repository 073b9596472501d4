"""The one seed derivation of the project.

Every random draw that must be reproducible — generation attempts (classes, noise), prompt
re-draws, template prompts, and the training collator's negatives — is keyed by a namespace and
a few parts (a run seed, an attempt or row id, an epoch, a stream name), joined into one text key
``"namespace:part:part..."``. :func:`derive_seed` hashes the key into a 63-bit integer (for torch
generators and for storing in rows); :func:`seeded_random` gives a ``random.Random`` seeded by the
key itself. Both are pure functions of their arguments: the same key gives the same draws in any
process, batch, DataLoader worker or resumed run.
"""

from __future__ import annotations

import hashlib
import random

_SEED_BITS = 63
#: Namespace of a generation run's per-attempt seeds: ``derive_seed(GENERATION_NAMESPACE, seed, attempt, stream)``
#: (streams ``classes``, ``noise``, ``prompt`` ...), shared by every source so attempt k draws alike.
GENERATION_NAMESPACE = "magicseg"


def seed_key(namespace: str, *parts: object) -> str:
    """The text key ``"namespace:part1:part2..."`` of a derivation."""
    return ":".join([namespace, *(str(part) for part in parts)])


def derive_seed(namespace: str, *parts: object) -> int:
    """A non-negative 63-bit seed for ``(namespace, *parts)`` (first 8 bytes of SHA-256 of the key)."""
    digest = hashlib.sha256(seed_key(namespace, *parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << _SEED_BITS) - 1)


def seeded_random(namespace: str, *parts: object) -> random.Random:
    """A ``random.Random`` seeded by the key of ``(namespace, *parts)``."""
    return random.Random(seed_key(namespace, *parts))
