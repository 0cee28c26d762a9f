"""Renderers: terminal, Markdown, self-contained HTML, plots."""
