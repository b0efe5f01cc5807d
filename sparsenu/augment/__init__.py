"""sparsenu.augment."""
