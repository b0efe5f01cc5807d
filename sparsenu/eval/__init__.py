"""sparsenu.eval."""
