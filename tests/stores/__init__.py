"""Tests of the stores (a package, so module names stay unique across test folders)."""
