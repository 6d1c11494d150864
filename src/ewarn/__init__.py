"""ewarn."""
