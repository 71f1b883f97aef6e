"""Probes that read every parameter once per recorded step: gradient and update statistics."""
