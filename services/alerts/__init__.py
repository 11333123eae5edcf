"""Alerts service."""
