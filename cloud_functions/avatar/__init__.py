"""The animal-avatar pipeline: decode, detect, mask, compose, store."""
