"""Hazard models room: rainfall accumulations, flash-flood and landslide indices,
zonal statistics per commune and Decision 18/2021 risk levels."""
