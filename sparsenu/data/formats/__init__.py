"""sparsenu.data.formats."""
