"""Training stage (torch): data loading, encoder loading, cached feature extraction, head fitting."""
