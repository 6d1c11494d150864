"""Forecasts room: read, normalize, validate and archive rainfall forecasts.

Every reader ends in the forecast contract of DESIGN.md; nothing downstream
knows where a forecast came from.
"""
