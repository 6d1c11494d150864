"""Scenarios room: planners' scenario files, what-if runs, comparisons and reports."""
