"""Renderers: text, JSON and Markdown views of the core's results. No decisions here."""
