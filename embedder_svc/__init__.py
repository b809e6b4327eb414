"""EmbedderService: turns texts into L2-normalised vectors with offline hashed-feature models."""
