"""sparsenu.data."""
