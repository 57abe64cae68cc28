"""Typed errors of the secure-aggregation protocol.

Every way a round can fail has its own class, so a caller (the strategy wrapper, a test, a
learner in the notebook) can tell "too many hospitals dropped out" from "someone tampered with
a message" without parsing error strings.
"""

from __future__ import annotations

__all__ = ["SecAggError", "SecAggAbort", "MessageRejected", "TamperedMessage", "ReplayedMessage",
           "ProtocolViolation"]


class SecAggError(Exception):
    """Base class of every secure-aggregation failure."""


class SecAggAbort(SecAggError):
    """Fewer than ``t`` parties remain at some step: the round stops and reveals nothing.

    Attributes:
        step: the protocol step at which the round stopped.
        have: parties still taking part.
        need: the threshold ``t``.
    """

    def __init__(self, step: str, have: int, need: int) -> None:
        self.step, self.have, self.need = step, have, need
        super().__init__(f"secure aggregation aborted at step {step!r}: only {have} parties "
                         f"remain but the threshold is t = {need}; no secret was reconstructed "
                         "and the server learns nothing about any input")


class MessageRejected(SecAggError):
    """A message failed a check and was discarded."""


class TamperedMessage(MessageRejected):
    """The authenticated encryption check failed: the bytes or header were modified."""


class ReplayedMessage(MessageRejected):
    """The message was already received, or belongs to another round."""


class ProtocolViolation(SecAggError):
    """A well-formed message that the protocol forbids (wrong step, sender or content)."""
