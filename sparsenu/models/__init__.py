"""sparsenu.models."""
