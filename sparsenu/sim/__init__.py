"""sparsenu.sim."""
