"""sparsenu.train."""
