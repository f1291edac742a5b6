"""Private: see the modules."""
