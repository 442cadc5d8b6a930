"""Metrics: 2-D mode coverage, Frechet distance, gradient statistics."""
