"""Kept tables of combining marks, one module per Unicode version (see pyfleet_tasks/unicode_marks.py)."""
