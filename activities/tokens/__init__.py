"""The token engine's activities: minting a token per settled obligation, one by one
(`minting.TokenActivities.mint_one`) or many per transaction through the group-commit
batcher (`batcher.MintBatcher`, `minting.mint_batch`)."""

from activities.tokens.minting import TokenActivities

__all__ = ["TokenActivities"]
