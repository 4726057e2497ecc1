"""Packs: one upload, several animals, the face found once (a generation per animal)."""
