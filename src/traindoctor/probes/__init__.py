"""Live-model probes (need torch)."""
