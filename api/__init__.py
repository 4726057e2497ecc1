"""The animal-avatar API service."""
