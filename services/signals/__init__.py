"""Signals service."""
