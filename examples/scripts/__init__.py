"""Scripts registered in ``reconciler.toml`` for ``run_script`` steps."""
