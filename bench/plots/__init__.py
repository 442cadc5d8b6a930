"""All figures of the harness (matplotlib, headless Agg backend): run artifacts, report figures
and sweep figures. Called by the run record, the report and the sweep; never by data or
metrics. Modules here import only leaf modules of ours (params)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt"]
