"""Framework integrations (recorder, Lightning and HF callbacks)."""
