"""Routing room: hazard-aware road graph, shortest paths, optimal shelter
assignment and departure schedules."""
