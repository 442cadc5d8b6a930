"""Markdown reports from an MLflow experiment: protocol card, tables, tests, figures, context."""

from bench.report.build import build_report

__all__ = ["build_report"]
