"""Reliability tests: kill soak, disk full, differential runs, resource bounds."""
