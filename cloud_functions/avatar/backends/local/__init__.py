"""The offline backends: LiteRT face models, a procedural compositor and files on disk."""
