"""reconciler: config-as-code for marketing-automation flows."""

__version__ = "0.1.0"
