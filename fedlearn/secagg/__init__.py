"""Secure aggregation: sum the hospitals' updates without the server seeing any one of them.

Built up in the order notebook 06 teaches it, one concept per module:

* :mod:`.prg` - masks expanded from a 32-byte seed with ChaCha20; cryptographic randomness;
* :mod:`.keys` - X25519 key agreement and HKDF;
* :mod:`.shamir` - t-of-n Shamir secret sharing, by hand;
* :mod:`.quantize` - fixed-point floats in the ring Z_(2^bits);
* :mod:`.channel`, :mod:`.wire`, :mod:`.errors` - authenticated messages and typed failures;
* :mod:`.masking`, :mod:`.protocol`, :mod:`.simulate` - Bonawitz et al. (2017) with dropout
  recovery, as explicit client and server objects;
* :mod:`.costs` - bytes per client in closed form (and Bonawitz et al.'s 1.73x);
* :mod:`.strategy`, :mod:`.ddp` - ``SecureAggregation(any strategy)`` (a thin constructor over
  :class:`fedlearn.aggregators.Secure`) and distributed DP;
* :mod:`.he` - the homomorphic-encryption alternative (TenSEAL CKKS), imported on demand;
* :mod:`.inversion` - the gradient-inversion attack that motivates all of this.
"""

from .channel import SERVER, Channel, Envelope, Kind
from .costs import bonawitz_expansion, client_bytes, expansion_factor, ring_bits
from .ddp import DistributedGaussian
from .errors import (
                     MessageRejected,
                     ProtocolViolation,
                     ReplayedMessage,
                     SecAggAbort,
                     SecAggError,
                     TamperedMessage,
)
from .keys import KeyPair, agree, generate_keypair
from .masking import SecAggConfig, pairwise_mask, pairwise_seed, self_mask
from .prg import SecureRandom, expand_mask
from .protocol import SecAggClient, SecAggServer
from .quantize import FixedPoint, mod_add, mod_sub, mod_sum
from .shamir import PRIME_256, Share, reconstruct_secret, split_secret
from .simulate import Dropouts, SecAggResult, make_identities, run_secure_sum
from .strategy import RoundContext, SecureAggregation

__all__ = [
    "SERVER", "Channel", "Envelope", "Kind",
    "bonawitz_expansion", "client_bytes", "expansion_factor", "ring_bits",
    "DistributedGaussian",
    "MessageRejected", "ProtocolViolation", "ReplayedMessage", "SecAggAbort", "SecAggError",
    "TamperedMessage",
    "KeyPair", "agree", "generate_keypair",
    "SecAggConfig", "pairwise_mask", "pairwise_seed", "self_mask",
    "SecureRandom", "expand_mask",
    "SecAggClient", "SecAggServer",
    "FixedPoint", "mod_add", "mod_sub", "mod_sum",
    "PRIME_256", "Share", "reconstruct_secret", "split_secret",
    "Dropouts", "SecAggResult", "make_identities", "run_secure_sum",
    "RoundContext", "SecureAggregation",
]
