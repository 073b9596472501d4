"""Filled in by later capabilities."""
