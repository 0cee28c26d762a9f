"""Live-model probes (need torch). Public entry point: probe(model, batch, ...)."""
